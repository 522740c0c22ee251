//! One module per subcommand.

pub(crate) mod audit;
pub(crate) mod bench;
pub(crate) mod inspect;
pub(crate) mod model;
pub(crate) mod quantize;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod token;
pub(crate) mod verify;
