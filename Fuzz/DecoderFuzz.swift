// libFuzzer target for the JSON decoder (DESIGN.md invariant 8: any byte
// sequence yields a value or an error with a byte offset; never a crash, a
// hang, a stack overflow or an out-of-bounds read).
//
// Built by Fuzz/run.sh together with Sources/SecureOpsEngine/JSON and
// Protocol, with -sanitize=fuzzer,address. On every input it decodes
// IpcRequest, JSONValue and RawJSON, and checks:
//   - all three agree on whether the input is well-formed JSON;
//   - every syntax error carries an offset within the input;
//   - an accepted value round-trips: JSONValue -> JSONWriter -> JSONValue,
//     RawJSON(validating:) equals the decoded RawJSON, FastJSONEncoder writes
//     the same bytes as JSONWriter, and RawJSON(value) re-decodes to it.

nonisolated(unsafe) let decoder = FastJSONDecoder()   // libFuzzer calls from one thread
nonisolated(unsafe) let shallow = FastJSONDecoder(maxDepth: 8)

func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() {
        print("invariant violated: \(message())")
        fatalError(message())
    }
}

func syntaxOffset(_ error: any Error, _ count: Int) -> Int? {
    guard let e = error as? JSONDecodingError else {
        check(false, "error of type \(type(of: error)): \(error)")
        return nil
    }
    check(!e.description.isEmpty, "empty error description")
    if let offset = e.offset { check(offset >= 0 && offset <= count, "offset \(offset) outside 0...\(count)") }
    return e.offset
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: size)

    var value: JSONValue?
    do {
        value = try decoder.decode(JSONValue.self, from: input)
    } catch {
        let offset = syntaxOffset(error, size)
        check(offset != nil, "JSONValue rejected without an offset: \(error)")
    }

    var raw: RawJSON?
    do {
        raw = try decoder.decode(RawJSON.self, from: input)
    } catch {
        _ = syntaxOffset(error, size)
    }
    check((value != nil) == (raw != nil), "JSONValue and RawJSON disagree on acceptance")
    let validated = try? RawJSON(validating: input)
    check((validated != nil) == (raw != nil), "RawJSON(validating:) disagrees with the decoder")

    do {
        let request = try decoder.decode(IpcRequest.self, from: input)
        check(value != nil, "IpcRequest accepted input that JSONValue rejected")
        _ = request.verb
    } catch {
        let offset = syntaxOffset(error, size)
        // A syntax error for the request means the text itself is bad.
        if offset != nil { check(value == nil, "IpcRequest reported a syntax error on valid JSON: \(error)") }
    }

    do {
        _ = try shallow.decode(JSONValue.self, from: input)
    } catch {
        _ = syntaxOffset(error, size)
    }

    if let value, let raw {
        check(validated?.bytes == raw.bytes, "RawJSON(validating:) bytes differ from the decoded span")
        var writer = JSONWriter()
        writer.value(value)
        let again = try? decoder.decode(JSONValue.self, from: writer.bytes)
        check(again == value, "JSONWriter output does not decode to the same value")
        let encoded = try? FastJSONEncoder().encode(value)
        check(encoded == writer.bytes, "FastJSONEncoder and JSONWriter differ")
        check(RawJSON(value).bytes == writer.bytes, "RawJSON(value) differs from JSONWriter")
        let fromRaw = try? decoder.decode(JSONValue.self, from: raw.bytes)
        check(fromRaw == value, "the raw span does not decode to the same value")
        // A frame written with the raw value inside stays valid.
        writer.reset()
        writer.beginObject(); writer.key("type"); writer.string("alert"); writer.key("details"); writer.raw(raw); writer.endObject()
        check((try? RawJSON(validating: writer.bytes)) != nil, "a frame embedding the raw value is invalid")
    }
    return 0
}
