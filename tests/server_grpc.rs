//! The real server over gRPC with tonic's client on the generated Triton proto: health,
//! metadata, config, raw and typed tensors, streaming, statistics, repository calls, and
//! the status codes of bad requests.
#![allow(clippy::unwrap_used)]

mod common;

use lrai_protocol::pb;
use lrai_protocol::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use tonic::Code;
use tonic::transport::Channel;

async fn client(s: &lrai::RunningServer) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr))
        .await
        .unwrap()
}

fn digits(rows: usize, raw: bool) -> pb::ModelInferRequest {
    let values = vec![0.5f32; rows * 64];
    let mut input = pb::model_infer_request::InferInputTensor {
        name: "input".into(),
        datatype: "FP32".into(),
        shape: vec![i64::try_from(rows).unwrap(), 64],
        ..Default::default()
    };
    let mut req = pb::ModelInferRequest {
        model_name: "digits_mlp".into(),
        ..Default::default()
    };
    if raw {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        req.raw_input_contents.push(bytes.into());
    } else {
        input.contents = Some(pb::InferTensorContents {
            fp32_contents: values,
            ..Default::default()
        });
    }
    req.inputs.push(input);
    req
}

fn logits(resp: &pb::ModelInferResponse) -> Vec<f32> {
    resp.raw_output_contents[0]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_config_and_infer_raw_and_typed() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    let mut c = client(&s).await;
    assert!(
        c.server_live(pb::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        !c.server_ready(pb::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready,
        "broken model: not ready"
    );
    let ready = c
        .model_ready(pb::ModelReadyRequest {
            name: "digits_mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap();
    assert!(ready.into_inner().ready);
    let meta = c
        .model_metadata(pb::ModelMetadataRequest {
            name: "digits_mlp".into(),
            version: "1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.inputs[0].shape, vec![-1, 64]);
    let cfg = c
        .model_config(pb::ModelConfigRequest {
            name: "digits_mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let cfg = cfg.config.unwrap();
    assert_eq!(cfg.max_batch_size, 64);
    assert_eq!(cfg.input[0].dims, vec![64]);
    assert_eq!(cfg.input[0].data_type, pb::DataType::TypeFp32 as i32);

    let raw = c.model_infer(digits(2, true)).await.unwrap().into_inner();
    assert_eq!(raw.outputs[0].shape, vec![2, 10]);
    assert_eq!(raw.model_version, "1");
    let typed = c.model_infer(digits(2, false)).await.unwrap().into_inner();
    assert_eq!(logits(&raw), logits(&typed));

    let stats = c
        .model_statistics(pb::ModelStatisticsRequest {
            name: "digits_mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.model_stats[0].inference_count, 4);
    assert_eq!(
        stats.model_stats[0]
            .inference_stats
            .as_ref()
            .unwrap()
            .success
            .as_ref()
            .unwrap()
            .count,
        2
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_tritons_codes() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    let mut c = client(&s).await;
    let mut unknown = digits(1, true);
    unknown.model_name = "nope".into();
    assert_eq!(
        c.model_infer(unknown).await.unwrap_err().code(),
        Code::NotFound
    );
    let mut broken = digits(1, true);
    broken.model_name = "broken".into();
    let e = c.model_infer(broken).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    let mut bad_shape = digits(1, true);
    bad_shape.inputs[0].shape = vec![64];
    let e = c.model_infer(bad_shape).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("max_batch_size 64"), "{e}");
    let mut short = digits(1, true);
    short.raw_input_contents[0] = bytes::Bytes::from_static(&[0; 12]);
    let e = c.model_infer(short).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let mut fake = pb::ModelInferRequest {
        model_name: "fake".into(),
        ..Default::default()
    };
    fake.inputs.push(pb::model_infer_request::InferInputTensor {
        name: "x".into(),
        datatype: "FP32".into(),
        shape: vec![1, 1],
        contents: Some(pb::InferTensorContents {
            fp32_contents: vec![-1.0],
            ..Default::default()
        }),
        ..Default::default()
    });
    let e = c.model_infer(fake).await.unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{e}");
    let shm = c
        .system_shared_memory_status(pb::SystemSharedMemoryStatusRequest::default())
        .await
        .unwrap_err();
    assert_eq!(shm.code(), Code::Unimplemented);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_answers_each_request_in_order() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    let mut c = client(&s).await;
    let mut bad = digits(1, true);
    bad.inputs[0].name = "pixels".into();
    let requests = vec![digits(1, true), bad, digits(3, true)];
    let mut stream = c
        .model_stream_infer(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(msg) = stream.message().await.unwrap() {
        got.push(msg);
    }
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[0].infer_response.as_ref().unwrap().outputs[0].shape,
        vec![1, 10]
    );
    assert!(
        got[1]
            .error_message
            .contains("unexpected inference input 'pixels'"),
        "{}",
        got[1].error_message
    );
    assert_eq!(
        got[2].infer_response.as_ref().unwrap().outputs[0].shape,
        vec![3, 10]
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_index_load_and_unload() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |c| c.model_control_mode = "explicit".into()).await;
    let mut c = client(&s).await;
    let index = c
        .repository_index(pb::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    let broken = index.models.iter().find(|m| m.name == "broken").unwrap();
    assert_eq!(broken.state, "UNAVAILABLE");
    c.repository_model_unload(pb::RepositoryModelUnloadRequest {
        model_name: "digits_mlp".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        c.model_infer(digits(1, true)).await.unwrap_err().code(),
        Code::NotFound
    );
    c.repository_model_load(pb::RepositoryModelLoadRequest {
        model_name: "digits_mlp".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(c.model_infer(digits(1, true)).await.is_ok());
    s.shutdown().await;
}
