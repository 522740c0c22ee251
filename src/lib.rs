//! The `lrai` package: the composition root under the `lrai` binary. It turns command-line
//! configuration into the library crates' own config structs and wires them together;
//! logic worth testing lives in the crates (`lrai-core`, `lrai-onnx`, `lrai-backend`, …),
//! not here.

pub mod config;
