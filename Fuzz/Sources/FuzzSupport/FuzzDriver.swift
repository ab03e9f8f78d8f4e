// MARK: - FuzzDriver

/// libFuzzer's driver for a program that has its own `main` ("Using libFuzzer as a library" in its manual):
/// parses libFuzzer's flags from `argv`, then runs `callback` on every input.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// Starts libFuzzer from a SwiftPM executable's top-level code.
///
/// SwiftPM links each executable with `--defsym main=<Target>_main`, which makes the target's top-level code the
/// process entry point and leaves libFuzzer's own `main` unused; this calls the driver that `main` would have.
public enum FuzzDriver {
    /// Runs libFuzzer with the process's command line and returns its exit status.
    public static func run(_ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        return LLVMFuzzerRunDriver(&argc, &argv, callback)
    }

    /// The input as a buffer; libFuzzer may pass a null pointer for the empty input.
    public static func buffer(_ data: UnsafePointer<UInt8>?, _ size: Int) -> UnsafeRawBufferPointer {
        guard let data, size > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: data, count: size)
    }
}

/// Stops the process with `message` when `condition` is false: the fuzzer records the input as a crash.
/// Unlike `assert`, it is checked in release builds, which is how the fuzz targets are built.
@inline(never)
public func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                      file: StaticString = #file, line: UInt = #line) {
    if !condition() { fatalError("invariant violated: \(message())", file: file, line: line) }
}
