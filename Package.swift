// swift-tools-version:6.0
// Bento: the host that serves file system modules (kmod/) through FUSE and
// upgrades them live.
import PackageDescription

let faulty: [Target.Dependency] = [
    .product(name: "BentoKit", package: "BentoKit"), .product(name: "XV6FS2", package: "xv6fs"),
]

let package = Package(
    name: "Bento",
    products: [
        .executable(name: "bento-upgraded", targets: ["BentoUpgraded"]),
        .executable(name: "bentoctl", targets: ["BentoCtl"]),
        // What mount(8) runs for `mount -t xv6` and fstab lines of type xv6.
        .executable(name: "mount.xv6", targets: ["MountXV6"]),
        .library(name: "BentoHost", targets: ["BentoHost"]),
        // Module files that fail upgrades on purpose (tests only; see Tests/Fixtures).
        .library(name: "FixtureImportFails", type: .dynamic, targets: ["FixtureImportFails"]),
        .library(name: "FixtureOtherFileSystem", type: .dynamic, targets: ["FixtureOtherFileSystem"]),
        .library(name: "FixtureNoCommonFormat", type: .dynamic, targets: ["FixtureNoCommonFormat"]),
        .library(name: "FixtureSlowImport", type: .dynamic, targets: ["FixtureSlowImport"]),
        // Versions that misbehave on purpose (see Tests/Fixtures/Faulty).
        .library(name: "FixtureFaultyTrap", type: .dynamic, targets: ["FixtureFaultyTrap"]),
        .library(name: "FixtureFaultyHang", type: .dynamic, targets: ["FixtureFaultyHang"]),
        .library(name: "FixtureFaultyReads", type: .dynamic, targets: ["FixtureFaultyReads"]),
        .library(name: "FixtureCopiedTable", type: .dynamic, targets: ["FixtureCopiedTable"]),
        .library(name: "FixtureOtherView", type: .dynamic, targets: ["FixtureOtherView"]),
        // The provenance layer at a later version, to upgrade a layer to.
        .library(name: "FixtureProvenanceNext", type: .dynamic, targets: ["FixtureProvenanceNext"]),
    ],
    dependencies: [
        .package(path: "kmod/BentoKit"),
        // Not linked by anything here: the module files are built from it
        // (`swift build --product XV6Module`) and loaded with dlopen.
        .package(path: "kmod/xv6fs"),
        // The same for the provenance layer (`--product ProvenanceModule`).
        .package(path: "kmod/provenance"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
    ],
    targets: [
        // libfuse3's low-level API (Debian: libfuse3-dev).
        .systemLibrary(name: "CFuse3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        // libsystemd: journal and sd_notify (Debian: libsystemd-dev).
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // The userspace half of the kernel shim: mount, request loop, gate.
        // What each request thread of a worker is doing, in shared memory
        // that outlives the worker; the fault handler that marks it.
        .target(name: "CFlightRecorder"),
        // The child process that has the kernel write dirty pages back.
        .target(name: "CBentoFlusher"),
        .target(name: "BentoFUSE", dependencies: [
            "CFuse3", "CFlightRecorder", "CBentoFlusher",
            .product(name: "BentoKit", package: "BentoKit"),
            .product(name: "BentoServices", package: "BentoKit"),
            .product(name: "Atomics", package: "swift-atomics"),
        ]),
        .testTarget(name: "BentoFUSETests", dependencies: ["BentoFUSE", .product(name: "BentoKit", package: "BentoKit")]),
        // The daemon's side of systemd: sd_notify, the fd store, journald.
        .target(name: "BentoSystemd", dependencies: ["CSystemd", .product(name: "Logging", package: "swift-log")]),
        // What runs in a mount's worker process: the module instance on the
        // session, live upgrades; and the protocol it speaks with the daemon.
        .target(name: "CBentoWorker", linkerSettings: [.linkedLibrary("seccomp")]),
        .target(name: "BentoWorker", dependencies: [
            "BentoControl", "BentoFUSE", "BentoHost", "CBentoWorker",
            .product(name: "BentoKit", package: "BentoKit"),
            .product(name: "BentoServices", package: "BentoKit"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The supervisor: mounts, worker processes, the fd store, upgrades'
        // bookkeeping, the control socket's answers, reload.
        .target(name: "BentoDaemon", dependencies: [
            "BentoConfig", "BentoControl", "BentoFUSE", "BentoHost", "BentoSystemd", "BentoWorker", "CBentoWorker",
            .product(name: "BentoKit", package: "BentoKit"),
            .product(name: "BentoServices", package: "BentoKit"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "BentoDaemonTests", dependencies: ["BentoDaemon", "BentoWorker"]),
        .executableTarget(name: "BentoUpgraded", dependencies: [
            "BentoConfig", "BentoControl", "BentoDaemon", "BentoHost", "BentoSystemd", "BentoWorker",
            .product(name: "BentoVersion", package: "BentoKit"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // /etc/bento/bento.toml: the mounts to serve, checked before any is mounted.
        .target(name: "BentoConfig", dependencies: [.product(name: "TOMLKit", package: "TOMLKit")]),
        // The control socket's JSON protocol: server side for the daemon, client for bentoctl.
        .target(name: "BentoControl"),
        .executableTarget(name: "BentoCtl", dependencies: [
            "BentoControl", .product(name: "BentoVersion", package: "BentoKit"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // mount.xv6: asks the running daemon to serve a mount (mount -t xv6, fstab).
        .executableTarget(name: "MountXV6", dependencies: [
            "BentoControl", .product(name: "BentoVersion", package: "BentoKit"),
        ]),
        .testTarget(name: "BentoConfigTests", dependencies: ["BentoConfig"]),
        .testTarget(name: "BentoControlTests", dependencies: ["BentoControl"]),
        // Loads module files and checks them before anything is mounted.
        .target(name: "BentoHost", dependencies: [.product(name: "BentoKit", package: "BentoKit")]),
        .target(name: "FixtureImportFails", dependencies: [.product(name: "BentoKit", package: "BentoKit")],
                path: "Tests/Fixtures/ImportFails", swiftSettings: [.define("FIXTURE_IMPORT_FAILS")]),
        .target(name: "FixtureOtherFileSystem", dependencies: [.product(name: "BentoKit", package: "BentoKit")],
                path: "Tests/Fixtures/OtherFileSystem", swiftSettings: [.define("FIXTURE_OTHER_FILE_SYSTEM")]),
        .target(name: "FixtureNoCommonFormat", dependencies: [.product(name: "BentoKit", package: "BentoKit")],
                path: "Tests/Fixtures/NoCommonFormat", swiftSettings: [.define("FIXTURE_NO_COMMON_FORMAT")]),
        .target(name: "FixtureSlowImport", dependencies: [.product(name: "BentoKit", package: "BentoKit")],
                path: "Tests/Fixtures/SlowImport", swiftSettings: [.define("FIXTURE_SLOW_IMPORT")]),
        .target(name: "FixtureFaultyTrap", dependencies: faulty, path: "Tests/Fixtures/FaultyTrap",
                swiftSettings: [.define("FIXTURE_TRAP")]),
        .target(name: "FixtureFaultyHang", dependencies: faulty, path: "Tests/Fixtures/FaultyHang",
                swiftSettings: [.define("FIXTURE_HANG")]),
        .target(name: "FixtureFaultyReads", dependencies: faulty, path: "Tests/Fixtures/FaultyReads",
                swiftSettings: [.define("FIXTURE_READS")]),
        .target(name: "FixtureCopiedTable", dependencies: faulty, path: "Tests/Fixtures/CopiedTable",
                swiftSettings: [.define("FIXTURE_COPIES")]),
        .target(name: "FixtureOtherView", dependencies: faulty, path: "Tests/Fixtures/OtherView",
                swiftSettings: [.define("FIXTURE_VIEW")]),
        .target(name: "FixtureProvenanceNext", dependencies: [
            .product(name: "BentoKit", package: "BentoKit"), .product(name: "ProvenanceLayer", package: "provenance"),
        ], path: "Tests/Fixtures/ProvenanceNext"),
        .testTarget(name: "BentoHostTests", dependencies: [
            "BentoHost",
            .product(name: "BentoKit", package: "BentoKit"),
            .product(name: "BentoServices", package: "BentoKit"),
        ]),
    ]
)
