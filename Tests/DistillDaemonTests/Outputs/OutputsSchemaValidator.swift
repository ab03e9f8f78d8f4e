import Foundation

// MARK: - Validating records against streams/schemas with Python's jsonschema

/// Runs Python's `jsonschema` (Draft 2020-12, with format checking) over records written to a temp dir.
///
/// `validate` returns nil when `python3` or its `jsonschema` package is missing; the caller prints a skip
/// note then. Otherwise it returns, per case, whether the schema accepted the instance and the first error.
enum OutputsSchemaValidator {
    /// The repository root: `Tests/DistillDaemonTests/Outputs/<file>.swift` up four levels.
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `streams/schemas`.
    static var schemasDirectory: URL { repositoryRoot.appendingPathComponent("streams/schemas") }

    /// One instance to check against one schema file.
    struct Case {
        /// A name for messages.
        var name: String
        /// Schema file name inside `streams/schemas`.
        var schema: String
        /// The instance's JSON bytes.
        var json: [UInt8]
    }

    /// The verdict on one case.
    struct Verdict: Decodable {
        /// Case name.
        var name: String
        /// True if the schema accepted the instance.
        var valid: Bool
        /// The first validation error, if any.
        var error: String?
    }

    static let script = """
        import json, sys
        try:
            import jsonschema
        except Exception as e:
            print("SKIP: python3 has no jsonschema package: %s" % e)
            sys.exit(3)
        manifest = json.load(open(sys.argv[1]))
        schemas = {}
        out = []
        for case in manifest:
            path = case["schema"]
            if path not in schemas:
                schema = json.load(open(path))
                jsonschema.Draft202012Validator.check_schema(schema)
                schemas[path] = jsonschema.Draft202012Validator(
                    schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
            instance = json.load(open(case["instance"]))
            errors = sorted(schemas[path].iter_errors(instance), key=lambda e: list(e.absolute_path))
            first = None
            if errors:
                e = errors[0]
                first = "/".join(str(p) for p in e.absolute_path) + ": " + e.message
            out.append({"name": case["name"], "valid": not errors, "error": first})
        json.dump(out, open(sys.argv[2], "w"))
        """

    /// Validates every case; nil when python3 or jsonschema is unavailable (a note is printed).
    static func validate(_ cases: [Case]) throws -> [Verdict]? {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("distilld-schema-\(UUID().uuidString)")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: dir) }
        var manifest: [[String: String]] = []
        for (i, c) in cases.enumerated() {
            let file = dir.appendingPathComponent("instance-\(i).json")
            try Data(c.json).write(to: file)
            manifest.append(["name": c.name, "schema": schemasDirectory.appendingPathComponent(c.schema).path,
                             "instance": file.path])
        }
        let manifestFile = dir.appendingPathComponent("manifest.json")
        try JSONSerialization.data(withJSONObject: manifest).write(to: manifestFile)
        let scriptFile = dir.appendingPathComponent("validate.py")
        try Data(script.utf8).write(to: scriptFile)
        let resultFile = dir.appendingPathComponent("result.json")

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", scriptFile.path, manifestFile.path, resultFile.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do {
            try process.run()
        } catch {
            print("SKIP: schema validation not run: cannot start python3 (\(error))")
            return nil
        }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus == 3 || process.terminationStatus == 127 {
            let why = output.trimmingCharacters(in: .whitespacesAndNewlines)
            print(why.isEmpty ? "SKIP: schema validation not run: python3 not found" : why)
            return nil
        }
        guard process.terminationStatus == 0 else {
            throw ValidatorFailure(message: "validator exited \(process.terminationStatus): \(output)")
        }
        return try JSONDecoder().decode([Verdict].self, from: Data(contentsOf: resultFile))
    }

    /// The validator script itself failed (bad schema, unreadable file).
    struct ValidatorFailure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}
