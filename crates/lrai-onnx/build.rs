//! Compiles the vendored `onnx.proto` (from the `onnx` 1.23.2 wheel, IR version 14) with
//! protox, so no system `protoc` is needed. Generated code goes to OUT_DIR.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["onnx/onnx.proto"], ["proto"])?;
    prost_build::Config::new()
        // Weights stay in one shared buffer instead of a Vec per initializer.
        .bytes([".onnx.TensorProto.raw_data"])
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
