//! Kubernetes protobuf request bodies.

use serde_json::Value;

use crate::error::ApiError;

pub fn decode(_body: &[u8]) -> Result<Value, ApiError> {
    Err(ApiError::UnsupportedMediaType("protobuf bodies are not decoded yet".into()))
}
