import BentoKit

/// The modules a mount serves, top first: any number of layers over one
/// file system module (`module = ["provenance-1.0.0.so", "xv6fs-1.0.0.so"]`
/// in the config). A mount of one module is a stack of one.
///
/// The daemon keeps a stack wherever it keeps a module path (the config's
/// `module`, the state store, a worker's start, an upgrade's report) as
/// its *spec*: the paths joined by newlines, which no module path holds.
/// A single module's spec is its path, as before stacks.
public struct ModuleStack: Sendable {
    /// Top first; the last is the file system module.
    public let modules: [LoadedModule]

    public static let separator: Character = "\n"

    public static func paths(of spec: String) -> [String] {
        spec.split(separator: separator, omittingEmptySubsequences: true).map(String.init)
    }

    public static func spec(of paths: [String]) -> String {
        paths.joined(separator: String(separator))
    }

    /// The spec for people: "a.so over b.so".
    public static func describe(_ spec: String) -> String {
        paths(of: spec).joined(separator: " over ")
    }

    /// Loads every module of `spec` and checks the stack's shape.
    public static func load(spec: String) throws(ModuleLoadError) -> ModuleStack {
        let paths = paths(of: spec)
        guard !paths.isEmpty else { throw .missing(spec) }
        var modules: [LoadedModule] = []
        for path in paths { modules.append(try ModuleLoader.load(path: path)) }
        let layers = modules.dropLast()
        if let fileSystem = layers.first(where: { $0.layer == nil }) { throw .fileSystemAbove(fileSystem.path) }
        if modules.last!.module == nil { throw .layerAtBottom(modules.last!.path) }
        var names = Set<String>()
        for layer in layers where !names.insert(layer.descriptor.fileSystem).inserted {
            throw .sameLayerTwice(layer.descriptor.fileSystem)
        }
        return ModuleStack(modules: modules)
    }

    public init(modules: [LoadedModule]) {
        self.modules = modules
    }

    public var spec: String { Self.spec(of: modules.map(\.path)) }
    /// The file system module at the bottom.
    public var bottom: LoadedModule { modules.last! }
    public var top: LoadedModule { modules[0] }
    /// "provenance 1.0.0 over xv6fs 1.0.0", for messages.
    public var name: String { modules.map(\.name).joined(separator: " over ") }

    /// The position of the module `next` replaces: the one of its name.
    public func position(for next: LoadedModule) -> Int? {
        modules.firstIndex { $0.descriptor.fileSystem == next.descriptor.fileSystem }
    }

    /// The stack with the module at `index` replaced by `next`.
    public func replacing(_ index: Int, with next: LoadedModule) -> ModuleStack {
        var modules = modules
        modules[index] = next
        return ModuleStack(modules: modules)
    }
}
