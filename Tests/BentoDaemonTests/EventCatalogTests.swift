import BentoWorker
import Foundation
import Testing

/// Every journal entry's MESSAGE_ID is explained in the catalog (what
/// `journalctl -x` shows) and listed in Docs/systemd.md.
@Suite struct EventCatalogTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func text(_ path: String) throws -> String {
        String(decoding: try Data(contentsOf: root.appendingPathComponent(path)), as: UTF8.self)
    }

    @Test func everyEventIsInTheCatalogAndTheDocs() throws {
        let catalog = try Self.text("systemd/bento.catalog")
        let docs = try Self.text("Docs/systemd.md")
        for event in Event.allCases {
            #expect(catalog.contains("\n-- \(event.rawValue)\nSubject: "), "\(event) is not in systemd/bento.catalog")
            #expect(docs.contains("| \(event.rawValue) |"), "\(event) is not in Docs/systemd.md's table")
        }
        #expect(Set(Event.allCases.map(\.rawValue)).count == Event.allCases.count, "MESSAGE_IDs are unique")
    }
}
