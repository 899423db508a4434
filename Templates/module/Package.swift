// swift-tools-version:6.0
// @NAME@: a file system served by Bento as a loadable module
// (lib@MODULE@Module.so). Made from Bento's module template.
import PackageDescription

/// The version this package builds. The module reports it, and it is part
/// of the Swift module name: a daemon keeps every version it loaded, side by
/// side, and two of them must share no Swift type names.
let version = "@VERSION@"

/// `make dev` (in Bento's tree) builds development versions of this one,
/// each under a Swift module name of its own: BENTO_DEV_BUILD=N adds "_devN".
let devBuild = Context.environment["BENTO_DEV_BUILD"].map { "_dev" + $0 } ?? ""
let moduleName = "@MODULE@_" + version.split(separator: ".").joined(separator: "_") + devBuild

let package = Package(
    name: "@NAME@",
    products: [
        // The module file: install it as @NAME@-<version>.so.
        .library(name: "@MODULE@Module", type: .dynamic, targets: [moduleName]),
    ],
    dependencies: [
        // The SDK: one copy, the host's, is loaded at run time.
        .package(path: "@BENTOKIT@"),
    ],
    targets: [
        .target(name: moduleName, dependencies: [.product(name: "BentoKit", package: "BentoKit")],
                path: "Sources/FileSystem"),
        // The tests call the module "@MODULE@", whatever its versioned name.
        .testTarget(name: "FileSystemTests", dependencies: [
            .target(name: moduleName),
            .product(name: "BentoServices", package: "BentoKit"),
        ], swiftSettings: [.unsafeFlags(["-module-alias", "@MODULE@=\(moduleName)"])]),
    ]
)
