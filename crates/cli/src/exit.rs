//! Exit codes: 64 (EX_USAGE) for bad configuration, 1 for everything else.

use std::process::ExitCode;

/// A command's failure, with the exit code it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    error: anyhow::Error,
    code: u8,
}

impl Failure {
    /// Bad flags, environment or files: the operator must fix the configuration.
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            code: 64,
        }
    }

    /// Anything that went wrong while running.
    pub(crate) fn runtime(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            code: 1,
        }
    }

    pub(crate) fn report(self) -> ExitCode {
        eprintln!("georep: error: {:#}", self.error);
        ExitCode::from(self.code)
    }
}
