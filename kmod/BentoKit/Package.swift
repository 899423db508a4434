// swift-tools-version:6.0
// BentoKit: the module SDK. Modules link the dynamic BentoKit product, the one
// copy of which lives in the host process; BentoServices holds the host-side
// implementations of the kernel services (block devices, the buffer cache,
// the operation journal); CBentoServices its few C shims. BentoVersion is
// the release number the tools of both packages print: not part of the SDK.
import PackageDescription

let package = Package(
    name: "BentoKit",
    products: [
        .library(name: "BentoKit", type: .dynamic, targets: ["BentoKit"]),
        .library(name: "BentoServices", targets: ["BentoServices"]),
        .library(name: "BentoVersion", targets: ["BentoVersion"]),
    ],
    targets: [
        .target(
            name: "BentoKit",
            swiftSettings: [.unsafeFlags(["-enable-library-evolution"])]
        ),
        .target(name: "CBentoServices"),
        .target(name: "BentoVersion"),
        .target(name: "BentoServices", dependencies: ["BentoKit", "CBentoServices"]),
        .testTarget(name: "BentoServicesTests", dependencies: ["BentoKit", "BentoServices", "CBentoServices"]),
    ]
)
