// swift-tools-version:6.0
// Bento: the host that serves file system modules (kmod/) through FUSE and
// upgrades them live.
import PackageDescription

let package = Package(
    name: "Bento",
    products: [
        .library(name: "BentoHost", targets: ["BentoHost"]),
    ],
    dependencies: [
        .package(path: "kmod/BentoKit"),
        // Not linked by anything here: the module files are built from it
        // (`swift build --product XV6Module`) and loaded with dlopen.
        .package(path: "kmod/xv6fs"),
    ],
    targets: [
        // Loads module files and checks them before anything is mounted.
        .target(name: "BentoHost", dependencies: [.product(name: "BentoKit", package: "BentoKit")]),
        .testTarget(name: "BentoHostTests", dependencies: [
            "BentoHost",
            .product(name: "BentoKit", package: "BentoKit"),
            .product(name: "BentoServices", package: "BentoKit"),
        ]),
    ]
)
