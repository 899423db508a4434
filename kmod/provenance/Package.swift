// swift-tools-version:6.0
// provenance: the Bento paper's provenance tracking as a layer that stacks
// over any file system module (Docs/module-sdk.md, "Layers"):
// `module = ["provenance-1.0.0.so", "xv6fs-1.0.0.so"]`.
import PackageDescription

let package = Package(
    name: "provenance",
    products: [
        // The module file, installed as provenance-1.0.0.so.
        .library(name: "ProvenanceModule", type: .dynamic, targets: ["ProvenanceModule"]),
        // The layer itself, for module files built on it (Tests/Fixtures).
        .library(name: "ProvenanceLayer", targets: ["ProvenanceLayer"]),
    ],
    dependencies: [
        .package(path: "../BentoKit"),
        // The tests stack the layer over xv6fs, in process.
        .package(path: "../xv6fs"),
    ],
    targets: [
        .target(name: "ProvenanceLayer", dependencies: [.product(name: "BentoKit", package: "BentoKit")]),
        // The module file's entry symbol.
        .target(name: "ProvenanceModule", dependencies: ["ProvenanceLayer"]),
        .testTarget(name: "ProvenanceLayerTests", dependencies: [
            "ProvenanceLayer",
            .product(name: "BentoKit", package: "BentoKit"),
            .product(name: "BentoServices", package: "BentoKit"),
            .product(name: "XV6FS", package: "xv6fs"),
        ]),
    ]
)
