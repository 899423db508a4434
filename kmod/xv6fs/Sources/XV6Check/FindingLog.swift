/// Collects findings, keeping at most `limit` of each kind so that a badly
/// damaged image cannot fill memory, while counting every error.
struct FindingLog {
    let limit: Int
    private(set) var findings: [Finding] = []
    private(set) var corrected = 0
    private(set) var left = 0
    /// Kinds of every error, listed or not.
    private(set) var errorKinds: Set<FindingKind> = []
    private var listed: [FindingKind: Int] = [:]
    private var omitted: [FindingKind: Int] = [:]

    init(limit: Int) {
        self.limit = max(limit, 1)
    }

    mutating func add(_ finding: Finding) {
        if finding.severity == .error {
            errorKinds.insert(finding.kind)
            if finding.repaired { corrected += 1 } else { left += 1 }
        }
        if listed[finding.kind, default: 0] < limit {
            listed[finding.kind, default: 0] += 1
            findings.append(finding)
        } else {
            omitted[finding.kind, default: 0] += 1
        }
    }

    /// The list, ending with a note for each kind that had findings left out.
    func finished() -> [Finding] {
        var all = findings
        for kind in FindingKind.allCases {
            if let count = omitted[kind] {
                all.append(Finding(severity: .info, kind: .omitted,
                                   message: "\(count) more finding(s) of kind \(kind.rawValue) not listed"))
            }
        }
        return all
    }
}
