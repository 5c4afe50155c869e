// The client's calls take and return the wire types (AlertInput,
// MonitorAlert, IpcError, ...): `import SecureOpsClient` brings them.
@_exported import SecureOpsJSON
@_exported import SecureOpsWire
