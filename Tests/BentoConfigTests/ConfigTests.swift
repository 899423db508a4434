import BentoConfig
import Foundation
import Testing

/// The error `text` is refused with (nil if it is accepted).
func refusal(_ text: String) -> ConfigError? {
    do {
        _ = try BentoConfiguration.parse(text, source: "bento.toml")
        return nil
    } catch {
        return error
    }
}

/// A valid `[[mount]]` table, for tests that break something around it.
func mountTable(_ n: Int) -> String {
    """
    [[mount]]
    image = "/img/\(n).img"
    mountpoint = "/mnt/\(n)"
    module = "/mod/xv6fs.so"

    """
}

@Suite struct ValidConfigs {
    @Test func fullConfigParses() throws {
        let text = """
            # optional daemon settings
            control_socket = "/run/bento/control.sock"
            state_dir = "/var/lib/bento"

            [[mount]]
            name = "xv6"
            image = "/var/lib/bento/xv6.img"
            mountpoint = "/mnt/xv6"
            module = "/usr/local/lib/bento/modules/xv6fs-1.0.0.so"
            threads = 4
            cache_mib = 1024
            allow_other = true
            writeback_cache = true

            [[mount]]   # the second one takes every default
            device = "/dev/loop0"
            mountpoint = "/mnt/other"
            module = "/usr/local/lib/bento/modules/xv6fs-2.0.0.so"
            """
        let config = try BentoConfiguration.parse(text, source: "bento.toml")
        #expect(config == BentoConfiguration(
            mounts: [
                MountConfiguration(
                    name: "xv6", image: "/var/lib/bento/xv6.img", mountpoint: "/mnt/xv6",
                    module: "/usr/local/lib/bento/modules/xv6fs-1.0.0.so",
                    threads: 4, cacheMiB: 1024, allowOther: true, writebackCache: true),
                MountConfiguration(
                    image: "/dev/loop0", mountpoint: "/mnt/other",
                    module: "/usr/local/lib/bento/modules/xv6fs-2.0.0.so"),
            ],
            controlSocket: "/run/bento/control.sock",
            stateDirectory: "/var/lib/bento"))
    }

    @Test func defaultsApplied() throws {
        let config = try BentoConfiguration.parse(mountTable(1), source: "bento.toml")
        let mount = try #require(config.mounts.first)
        #expect(mount.name == nil)
        #expect(mount.threads == 8)
        #expect(mount.cacheMiB == 256)
        #expect(mount.allowOther == false)
        #expect(mount.writebackCache == false)
        #expect(mount.pollMicroseconds == nil)
        #expect(config.controlSocket == nil)
        #expect(config.stateDirectory == nil)
    }

    /// Space checks hold threads while the kernel writes back (enospc.md).
    @Test func writebackCacheDoublesTheDefaultThreads() throws {
        let config = try BentoConfiguration.parse(mountTable(1) + "writeback_cache = true\n", source: "bento.toml")
        #expect(config.mounts.first?.threads == 16)
        let given = try BentoConfiguration.parse(mountTable(1) + "writeback_cache = true\nthreads = 3\n", source: "bento.toml")
        #expect(given.mounts.first?.threads == 3)
    }

    @Test func deviceInsteadOfImage() throws {
        let text = """
            [[mount]]
            device = "/dev/sdb1"
            mountpoint = "/mnt/xv6"
            module = "/mod/xv6fs.so"
            """
        let config = try BentoConfiguration.parse(text, source: "bento.toml")
        #expect(config.mounts.map(\.image) == ["/dev/sdb1"])
    }

    @Test func bounds() throws {
        let low = try BentoConfiguration.parse(mountTable(1) + "threads = 1\ncache_mib = 1\npoll_us = 0\n", source: "x")
        #expect(low.mounts[0].threads == 1 && low.mounts[0].cacheMiB == 1 && low.mounts[0].pollMicroseconds == 0)
        let high = try BentoConfiguration.parse(mountTable(1) + "threads = 256\ncache_mib = 65536\npoll_us = 1000\n", source: "x")
        #expect(high.mounts[0].threads == 256 && high.mounts[0].cacheMiB == 65536 && high.mounts[0].pollMicroseconds == 1000)
    }

    @Test func inlineTablesAndCRLF() throws {
        let inline = """
            mount = [
              { image = "/a.img", mountpoint = "/mnt/a", module = "/m.so" },
              { device = "/dev/sdb", mountpoint = "/mnt/b", module = "/m.so", threads = 2 },
            ]
            """
        let config = try BentoConfiguration.parse(inline, source: "x")
        #expect(config.mounts.map(\.mountpoint) == ["/mnt/a", "/mnt/b"])
        #expect(config.mounts[1].threads == 2)

        let crlf = mountTable(1).replacingOccurrences(of: "\n", with: "\r\n") + "threads = 0\r\n"
        #expect(refusal(crlf)?.line == 5)
    }

    @Test func loadsAFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("bento-config-\(getpid()).toml").path
        try mountTable(1).write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let config = try BentoConfiguration.load(path: path)
        #expect(config.mounts.map(\.mountpoint) == ["/mnt/1"])
    }
}

@Suite struct RefusedConfigs {
    /// The example from the error's documentation, to the character.
    @Test func wrongTypeNamesLineAndField() {
        let text = mountTable(1) + """
            [[mount]]
            image = "/b.img"
            threads = "many"
            mountpoint = "/mnt/b"
            module = "/m.so"
            """
        do {
            _ = try BentoConfiguration.parse(text, source: "/etc/bento/bento.toml")
            Issue.record("threads = \"many\" was accepted")
        } catch {
            #expect(error.description == #"/etc/bento/bento.toml:7: mount[2].threads: must be an integer from 1 to 256, not "many""#)
            #expect(error.line == 7 && error.field == "mount[2].threads")
        }
    }

    @Test(arguments: [
        ("mountpoint = 42", "mount[1].mountpoint", "must be an absolute path, not 42"),
        ("allow_other = \"yes\"", "mount[1].allow_other", #"must be true or false, not "yes""#),
        ("writeback_cache = 1", "mount[1].writeback_cache", "must be true or false, not 1"),
        ("name = 7", "mount[1].name", "must be a string, not 7"),
        ("cache_mib = 1.5", "mount[1].cache_mib", "must be an integer from 1 to 65536, not 1.5"),
        ("threads = [1]", "mount[1].threads", "must be an integer from 1 to 256, not an array"),
    ])
    func wrongTypes(line: String, field: String, message: String) throws {
        // The bad key goes right after the header, replacing a good one if needed.
        let key = line.prefix { $0 != " " }
        let body = mountTable(1).split(separator: "\n").map(String.init).filter { !$0.hasPrefix(key + " ") }.dropFirst()
        let text = (["[[mount]]", line] + body).joined(separator: "\n")
        let error = try #require(refusal(text))
        #expect(error.description == "bento.toml:2: \(field): \(message)")
    }

    @Test(arguments: [
        ("threads", 0), ("threads", 257), ("threads", -1), ("cache_mib", 0), ("cache_mib", 65537),
        ("poll_us", -1), ("poll_us", 1001),
    ])
    func outOfRange(key: String, value: Int) throws {
        let text = "state_dir = \"/var/lib/bento\"\n\n" + mountTable(1) + mountTable(2) + "\(key) = \(value)\n"
        let error = try #require(refusal(text))
        #expect(error.line == 11)
        #expect(error.field == "mount[2].\(key)")
        #expect(error.message.hasSuffix("not \(value)"))
    }

    @Test(arguments: [
        ("image", "mount[1].image", 3),
        ("mountpoint", "mount[1].mountpoint", 4),
        ("module", "mount[1].module", 5),
    ])
    func relativeMountPaths(key: String, field: String, line: Int) throws {
        let text = "\n" + mountTable(1).replacingOccurrences(of: "\(key) = \"/", with: "\(key) = \"")
        let error = try #require(refusal(text))
        #expect(error.line == line)
        #expect(error.field == field)
        #expect(error.message.hasPrefix("must be an absolute path, not \""))
    }

    @Test(arguments: ["control_socket", "state_dir"])
    func relativeDaemonPaths(key: String) throws {
        let text = "# settings\n\(key) = \"run/bento\"\n\n" + mountTable(1)
        let error = try #require(refusal(text))
        #expect(error.description == #"bento.toml:2: \#(key): must be an absolute path, not "run/bento""#)
    }

    @Test func messagesQuoteStringsAsTOMLWould() throws {
        let text = #"""
            [[mount]]
            image = "my \"disk\"\n.img"
            """#
        let error = try #require(refusal(text))
        #expect(error.description == #"bento.toml:2: mount[1].image: must be an absolute path, not "my \"disk\"\n.img""#)
    }

    @Test func typoInMountKey() throws {
        let text = mountTable(1) + """
            [[mount]]
            image = "/b.img"
            mountpiont = "/mnt/b"
            module = "/m.so"
            """
        let error = try #require(refusal(text))
        #expect(error.line == 7)
        #expect(error.field == "mount[2].mountpiont")
        #expect(error.message.hasPrefix("unknown key"))
    }

    @Test func unknownTopLevelKey() throws {
        let error = try #require(refusal("threads = 4\n" + mountTable(1)))
        #expect(error.line == 1 && error.field == "threads")
        let table = try #require(refusal(mountTable(1) + "\n[daemon]\nsocket = \"/run/x\"\n"))
        #expect(table.line == 6 && table.field == "daemon")
    }

    @Test func missingKeysPointAtTheHeader() throws {
        let noMountpoint = mountTable(1) + "\n[[mount]]\nimage = \"/b.img\"\nmodule = \"/m.so\"\n"
        let error = try #require(refusal(noMountpoint))
        #expect(error.description == "bento.toml:6: mount[2].mountpoint: missing: every [[mount]] needs a mountpoint")

        let noModule = try #require(refusal("[[mount]]\nimage = \"/a\"\nmountpoint = \"/mnt/a\"\n"))
        #expect(noModule.line == 1 && noModule.field == "mount[1].module")

        let noImage = try #require(refusal("\n\n[[mount]]\nmountpoint = \"/mnt/a\"\nmodule = \"/m.so\"\n"))
        #expect(noImage.line == 3 && noImage.field == "mount[1].image")
    }

    @Test func imageAndDeviceBoth() throws {
        let text = """
            [[mount]]
            image = "/a.img"
            mountpoint = "/mnt/a"
            device = "/dev/sdb"
            module = "/m.so"
            """
        let error = try #require(refusal(text))
        #expect(error.description == "bento.toml:4: mount[1].device: give image or device, not both")
    }

    @Test func sameMountpointTwice() throws {
        let text = mountTable(1) + mountTable(2).replacingOccurrences(of: "/mnt/2", with: "/mnt//1/")
        let error = try #require(refusal(text))
        #expect(error.description == "bento.toml:7: mount[2].mountpoint: already used by mount[1] (line 3)")
    }

    @Test func sameImageTwice() throws {
        let text = mountTable(1) + mountTable(2).replacingOccurrences(of: "image = \"/img/2.img\"", with: "device = \"/img/1.img\"")
        let error = try #require(refusal(text))
        #expect(error.line == 6 && error.field == "mount[2].device")
    }

    @Test func sameNameTwice() throws {
        let text = mountTable(1) + "name = \"xv6\"\n" + mountTable(2) + "name = \"xv6\"\n"
        let error = try #require(refusal(text))
        #expect(error.line == 10 && error.field == "mount[2].name")
    }

    @Test func singleBracketMountTable() throws {
        let text = mountTable(1).replacingOccurrences(of: "[[mount]]", with: "[mount]")
        let error = try #require(refusal("\n" + text))
        #expect(error.line == 2 && error.field == "mount")
        #expect(error.message.contains("[[mount]]"))
    }

    /// No [[mount]]: the daemon serves only what `mount -t xv6` asks for.
    @Test(arguments: ["", "\n\n# nothing here\n", "mount = []\n"])
    func noMounts(text: String) throws {
        #expect(try BentoConfiguration.parse(text, source: "bento.toml").mounts.isEmpty)
    }

    @Test func onlyDaemonSettings() throws {
        let config = try BentoConfiguration.parse("control_socket = \"/run/x.sock\"\nstate_dir = \"/var/lib/x\"\n", source: "bento.toml")
        #expect(config.mounts.isEmpty && config.controlSocket == "/run/x.sock" && config.stateDirectory == "/var/lib/x")
    }

    @Test func syntaxErrorGivesTOMLKitsLine() throws {
        let text = mountTable(1) + "threads = 4\ncache_mib = \"unterminated\n"
        let error = try #require(refusal(text))
        #expect(error.line == 6)
        #expect(error.field == nil)
        #expect(error.message.hasPrefix("invalid TOML: "))
    }

    @Test func duplicateKeyIsASyntaxError() throws {
        let error = try #require(refusal(mountTable(1) + "mountpoint = \"/mnt/again\"\n"))
        #expect(error.line == 5)
    }

    @Test func garbage() throws {
        let error = try #require(refusal("this is not a config file\n{}{}{}\n"))
        #expect(error.line == 1)
        #expect(error.message.hasPrefix("invalid TOML: "))

        let binary = try #require(refusal("\n\u{7f}ELF\u{2}\u{1}\u{0}\u{0}"))
        #expect(binary.line == 2)
    }

    @Test func missingFile() throws {
        let path = "/nonexistent/bento-\(getpid()).toml"
        #expect(throws: ConfigError(source: path, message: "cannot open: No such file or directory")) {
            try BentoConfiguration.load(path: path)
        }
    }

    @Test func directoryIsNotAFile() throws {
        do {
            _ = try BentoConfiguration.load(path: "/")
            Issue.record("a directory was read as a config")
        } catch {
            #expect(error.description == "/: cannot read: Is a directory")
        }
    }
}
