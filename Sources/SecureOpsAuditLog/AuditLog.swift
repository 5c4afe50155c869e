// The signed audit log lives here (issue 4 of the tracker: control plane).
import Crypto
import SecureOpsEngine
