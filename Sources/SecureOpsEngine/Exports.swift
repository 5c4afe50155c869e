// A handler writes JSON frames and may speak the SecureOps wire types:
// `import SecureOpsEngine` brings both.
@_exported import SecureOpsJSON
@_exported import SecureOpsWire
// `EngineConfiguration.journal` takes an opened `Journal`.
@_exported import SecureOpsJournal
