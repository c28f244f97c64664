//! Status codes carried in replies.
//!
//! Values below 10 000 are the CUDA driver API's `CUresult` numbers, so a driver-level
//! front end passes them through and the runtime front end maps them the way libcudart does.
//! Values from 10 000 up are remora's own (transport and protocol failures).

/// A reply status: `CUresult` numbering, plus remora's own codes from 10 000.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u32);

macro_rules! statuses {
    ($($name:ident = $value:expr, $text:expr;)*) => {
        impl Status {
            $(#[doc = $text] pub const $name: Status = Status($value);)*

            /// The constant's name (`CUDA_ERROR_*` style without the prefix), if this is a known code.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// A one-line description.
            pub fn description(self) -> &'static str {
                match self.0 {
                    $($value => $text,)*
                    _ => "unrecognised status code",
                }
            }
        }
    };
}

statuses! {
    SUCCESS = 0, "no error";
    INVALID_VALUE = 1, "invalid argument";
    OUT_OF_MEMORY = 2, "out of memory";
    NOT_INITIALIZED = 3, "driver not initialised";
    DEINITIALIZED = 4, "driver shutting down";
    NO_DEVICE = 100, "no CUDA-capable device";
    INVALID_DEVICE = 101, "invalid device ordinal";
    INVALID_IMAGE = 200, "invalid kernel image";
    INVALID_CONTEXT = 201, "invalid context";
    NO_BINARY_FOR_GPU = 209, "no kernel image for this GPU";
    INVALID_PTX = 218, "PTX JIT compilation failed";
    INVALID_SOURCE = 300, "invalid source";
    INVALID_HANDLE = 400, "invalid resource handle";
    NOT_FOUND = 500, "named symbol not found";
    NOT_READY = 600, "operation not yet complete";
    ILLEGAL_ADDRESS = 700, "illegal memory access";
    LAUNCH_OUT_OF_RESOURCES = 701, "too many resources requested for launch";
    LAUNCH_TIMEOUT = 702, "launch timed out";
    ASSERT = 710, "device-side assert triggered";
    ILLEGAL_INSTRUCTION = 715, "illegal instruction";
    MISALIGNED_ADDRESS = 716, "misaligned address";
    LAUNCH_FAILED = 719, "unspecified launch failure";
    NOT_PERMITTED = 800, "operation not permitted";
    NOT_SUPPORTED = 801, "operation not supported";
    UNKNOWN = 999, "unknown error";
    PROTOCOL = 10_000, "remora: malformed or unexpected frame";
    UNSUPPORTED_OPCODE = 10_001, "remora: the server does not know this operation";
    AUTH_FAILED = 10_002, "remora: authentication failed";
    VERSION_MISMATCH = 10_003, "remora: no common protocol version";
    OUT_OF_RANGE = 10_004, "remora: memory range not owned by this session";
    LIMIT_EXCEEDED = 10_005, "remora: per-session limit exceeded";
    TRANSPORT = 10_006, "remora: connection to the server failed";
    SERVER_BUSY = 10_007, "remora: server has no free worker";
    ADDRESS_IN_USE = 10_008, "remora: the requested address range is taken in the worker";
}

impl Status {
    /// Whether this is [`Status::SUCCESS`].
    pub fn is_ok(self) -> bool {
        self == Status::SUCCESS
    }

    /// `Ok(())` for success, else `Err(self)`.
    pub fn result(self) -> Result<(), Status> {
        if self.is_ok() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// Whether this error leaves the CUDA context unusable (CUDA's "sticky" errors): every later
    /// operation of the session fails with it.
    pub fn is_fatal(self) -> bool {
        matches!(self.0, 700 | 701 | 702 | 710 | 715 | 716 | 719) || (714..=720).contains(&self.0)
    }
}

impl core::fmt::Debug for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}({})", self.0),
            None => write!(f, "Status({})", self.0),
        }
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({:?})", self.description(), self)
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_fatality() {
        assert_eq!(Status::ASSERT.name(), Some("ASSERT"));
        assert_eq!(Status(12345).name(), None);
        assert!(Status::ILLEGAL_ADDRESS.is_fatal());
        assert!(!Status::OUT_OF_MEMORY.is_fatal());
        assert_eq!(format!("{:?}", Status::NOT_SUPPORTED), "NOT_SUPPORTED(801)");
        assert_eq!(Status::INVALID_VALUE.result(), Err(Status::INVALID_VALUE));
        assert!(Status::SUCCESS.result().is_ok());
    }
}
