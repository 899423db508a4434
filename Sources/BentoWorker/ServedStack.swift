@_spi(Host) import BentoKit
import BentoHost

/// The instances that serve a mount, one per module of its stack, top
/// first, and the lower file systems that link each layer to the instance
/// below it. The kernel's requests go to the top; an upgrade replaces one
/// instance and leaves the others serving.
final class ServedStack: @unchecked Sendable {
    private(set) var stack: ModuleStack
    private(set) var instances: [any FileSystem]
    /// lowers[i]: what the layer at i is lent, the instance at i + 1.
    private let lowers: [LowerFileSystem]

    /// What a restart hands over for a stack of more than one module: each
    /// instance's state, top first (a single module's state goes as it is).
    static let stateFormat = StateFormat(name: "bento-stack", version: 1)

    var top: any FileSystem { instances[0] }

    private init(_ stack: ModuleStack, bottom: any FileSystem, superBlock: SuperBlock,
                 layer: (_ index: Int, _ module: any BentoLayerModule, _ lower: LowerFileSystem) throws -> any FileSystem) throws {
        self.stack = stack
        var instances = [bottom]
        var lowers: [LowerFileSystem] = []
        for index in stride(from: stack.modules.count - 2, through: 0, by: -1) {
            let below = stack.modules[index + 1]
            let lower = LowerFileSystem(instances[0], descriptor: below.descriptor)
            instances.insert(try layer(index, stack.modules[index].layer!, lower), at: 0)
            lowers.insert(lower, at: 0)
        }
        self.instances = instances
        self.lowers = lowers
    }

    /// A fresh mount, bottom up.
    static func mount(_ stack: ModuleStack, superBlock: SuperBlock) throws -> ServedStack {
        try ServedStack(stack, bottom: try stack.bottom.module!.mount(superBlock), superBlock: superBlock) { _, layer, lower in
            try layer.mount(superBlock, over: lower)
        }
    }

    /// Carries on from what `exportState` wrote, bottom up.
    static func restore(_ stack: ModuleStack, superBlock: SuperBlock, from state: ExportedState) throws -> ServedStack {
        guard stack.modules.count > 1 else {
            return try ServedStack(stack, bottom: try stack.bottom.module!.restore(superBlock, from: state), superBlock: superBlock) { _, _, _ in
                throw Errno.EINVAL
            }
        }
        guard state.format == stateFormat else { throw Errno.EINVAL }
        var reader = StateReader(state.bytes)
        var states: [ExportedState] = []
        for _ in 0..<(try reader.readCount(minimumSize: 20)) {
            let format = StateFormat(name: try reader.readString(), version: try reader.read())
            states.append(ExportedState(format: format, bytes: try reader.readBytes()))
        }
        guard reader.isAtEnd, states.count == stack.modules.count else { throw Errno.EINVAL }
        let bottom = try stack.bottom.module!.restore(superBlock, from: states.last!)
        return try ServedStack(stack, bottom: bottom, superBlock: superBlock) { index, layer, lower in
            try layer.restore(superBlock, over: lower, from: states[index])
        }
    }

    /// Every instance's state, for the next process: one module's in its
    /// own format, a stack's in `stateFormat`.
    func exportState() throws -> ExportedState? {
        var states: [ExportedState] = []
        for (module, instance) in zip(stack.modules, instances) {
            guard let format = module.descriptor.handoverFormat(to: module.descriptor) else { return nil }
            states.append(try instance.exportState(format: format))
        }
        guard states.count > 1 else { return states[0] }
        var writer = StateWriter(capacity: states.reduce(64) { $0 + $1.bytes.count + 48 })
        writer.write(UInt64(states.count))
        for state in states {
            writer.write(state.format.name)
            writer.write(state.format.version)
            writer.write(bytes: state.bytes)
        }
        return ExportedState(format: Self.stateFormat, bytes: writer.bytes)
    }

    /// Makes the instance that replaces the one at `index`: a layer over
    /// the same lower file system, or the file system on the superblock.
    func restore(_ index: Int, _ next: LoadedModule, superBlock: SuperBlock, from state: ExportedState) throws -> any FileSystem {
        switch next.kind {
        case .fileSystem(let module): try module.restore(superBlock, from: state)
        case .layer(let layer): try layer.restore(superBlock, over: lowers[index], from: state)
        }
    }

    /// Puts `instance` of `next` at `index` (gate closed: no call in
    /// flight). The layer above, if any, is lent the new one from now on.
    func replace(_ index: Int, with next: LoadedModule, instance: any FileSystem) {
        instances[index] = instance
        stack = stack.replacing(index, with: next)
        if index > 0 { lowers[index - 1].replace(with: instance, descriptor: next.descriptor) }
    }
}
