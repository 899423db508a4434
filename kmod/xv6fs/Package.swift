// swift-tools-version:6.0
// xv6fs: the xv6 file system as a Bento module, plus mkfs.xv6 and fsck.xv6
// built from the same code.
import PackageDescription

// Release builds of the file system leave out the runtime's exclusivity
// checks: the inodes and tables are class properties, and checking each
// access cost 14% of the metadata workloads' instructions (`xv6-bench
// --metadata` under callgrind). Debug builds, which every test runs, keep
// them.
let fileSystemSettings: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "xv6fs",
    products: [
        // The module files: installed as xv6fs-1.0.0.so, xv6fs-2.0.0.so and xv6fs-3.0.0.so.
        .library(name: "XV6Module", type: .dynamic, targets: ["XV6Module"]),
        .library(name: "XV6Module2", type: .dynamic, targets: ["XV6Module2"]),
        .library(name: "XV6Module3", type: .dynamic, targets: ["XV6Module3"]),
        .executable(name: "mkfs.xv6", targets: ["MkfsXV6"]),
        .executable(name: "fsck.xv6", targets: ["FsckXV6"]),
        .executable(name: "xv6-bench", targets: ["XV6Bench"]),
        .library(name: "XV6FS", targets: ["XV6FS"]),
        // Version 2's copy, for test module files built on it (Tests/Fixtures/Faulty).
        .library(name: "XV6FS2", targets: ["XV6FS2"]),
        .library(name: "XV6Check", targets: ["XV6Check"]),
        // The format (mkfs's Format.format), for packages that test over xv6fs.
        .library(name: "XV6Layout", targets: ["XV6Layout"]),
    ],
    dependencies: [
        .package(path: "../BentoKit"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // The on-disk format: layout, encodings, checksums, and formatting.
        .target(name: "XV6Layout", dependencies: [.product(name: "BentoKit", package: "BentoKit")]),
        // The file system: log, allocator, inodes, directories, operations.
        .target(name: "XV6FS", dependencies: ["XV6Layout", .product(name: "BentoKit", package: "BentoKit")],
                swiftSettings: fileSystemSettings),
        // The checker behind fsck.xv6.
        .target(name: "XV6Check", dependencies: ["XV6Layout", .product(name: "BentoKit", package: "BentoKit")]),
        // The same file system under another module name, for version 2.
        .target(name: "XV6FS2", dependencies: ["XV6Layout", .product(name: "BentoKit", package: "BentoKit")],
                swiftSettings: fileSystemSettings),
        // And again for version 3.
        .target(name: "XV6FS3", dependencies: ["XV6Layout", .product(name: "BentoKit", package: "BentoKit")],
                swiftSettings: fileSystemSettings),
        // The module files' entry symbol: version 1, version 2 (provenance),
        // and version 3 (provenance, extended attributes and the data features).
        .target(name: "XV6Module", dependencies: ["XV6FS"]),
        .target(name: "XV6Module2", dependencies: ["XV6FS2"], swiftSettings: [.define("XV6FS_V2")]),
        .target(name: "XV6Module3", dependencies: ["XV6FS3"], swiftSettings: [.define("XV6FS_V3")]),
        // What the two tools share.
        .target(name: "XV6ToolSupport", dependencies: [
            .product(name: "BentoServices", package: "BentoKit"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "MkfsXV6", dependencies: [
            "XV6Layout", "XV6ToolSupport",
            .product(name: "BentoServices", package: "BentoKit"),
            .product(name: "BentoVersion", package: "BentoKit"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "FsckXV6", dependencies: [
            "XV6Check", "XV6Layout", "XV6ToolSupport",
            .product(name: "BentoServices", package: "BentoKit"),
            .product(name: "BentoVersion", package: "BentoKit"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // In-process benchmark of the file system core on a RAM device.
        .executableTarget(name: "XV6Bench", dependencies: [
            "XV6FS", "XV6Layout",
            .product(name: "BentoServices", package: "BentoKit"),
        ]),
        .testTarget(name: "XV6CheckTests", dependencies: [
            "XV6Check", "XV6Layout",
            .product(name: "BentoServices", package: "BentoKit"),
        ]),
        .testTarget(name: "XV6ToolSupportTests", dependencies: [
            "XV6ToolSupport", .product(name: "BentoServices", package: "BentoKit"),
        ]),
        .testTarget(name: "XV6FSTests", dependencies: [
            "XV6FS", "XV6Check", "XV6Layout",
            .product(name: "BentoServices", package: "BentoKit"),
        ]),
    ]
)
