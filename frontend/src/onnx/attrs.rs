//! AttributeProto -> `smelt_ir::Attr`.

use super::tensor::{ExternalData, TensorErr, tensor_data};
use onnx_protobuf::AttributeProto;
use onnx_protobuf::attribute_proto::AttributeType;
use smelt_ir::{Attr, Attrs};

/// Why an attribute could not be converted.
pub(crate) enum AttrErr {
    /// A kind smelt does not handle (subgraphs, sparse tensors, types).
    Unsupported(String),
    Invalid(String),
}

fn utf8(name: &str, b: Vec<u8>) -> Result<String, AttrErr> {
    String::from_utf8(b).map_err(|_| {
        AttrErr::Invalid(format!(
            "attribute `{name}` holds a string that is not UTF-8"
        ))
    })
}

/// The declared type, or for writers that leave it unset, the field in use.
fn kind(a: &AttributeProto) -> Result<AttributeType, i32> {
    match a.type_.enum_value() {
        Ok(AttributeType::UNDEFINED) => Ok(if a.t.is_some() {
            AttributeType::TENSOR
        } else if a.g.is_some() {
            AttributeType::GRAPH
        } else if !a.ints.is_empty() {
            AttributeType::INTS
        } else if !a.floats.is_empty() {
            AttributeType::FLOATS
        } else if !a.strings.is_empty() {
            AttributeType::STRINGS
        } else if !a.s.is_empty() {
            AttributeType::STRING
        } else if a.f != 0.0 {
            AttributeType::FLOAT
        } else {
            AttributeType::INT
        }),
        other => other,
    }
}

pub(crate) fn convert(
    list: &mut [AttributeProto],
    ext: &mut ExternalData,
) -> Result<Attrs, AttrErr> {
    let mut out = Attrs::new();
    for a in list.iter_mut() {
        let name = a.name.clone();
        if !a.ref_attr_name.is_empty() {
            return Err(AttrErr::Invalid(format!(
                "attribute `{name}` refers to function attribute `{}`, which is only valid inside a function",
                a.ref_attr_name
            )));
        }
        let v = match kind(a) {
            Ok(AttributeType::INT) => Attr::Int(a.i),
            Ok(AttributeType::FLOAT) => Attr::Float(a.f),
            Ok(AttributeType::STRING) => Attr::String(utf8(&name, std::mem::take(&mut a.s))?),
            Ok(AttributeType::INTS) => Attr::Ints(std::mem::take(&mut a.ints)),
            Ok(AttributeType::FLOATS) => Attr::Floats(std::mem::take(&mut a.floats)),
            Ok(AttributeType::STRINGS) => Attr::Strings(
                std::mem::take(&mut a.strings)
                    .into_iter()
                    .map(|s| utf8(&name, s))
                    .collect::<Result<_, _>>()?,
            ),
            Ok(AttributeType::TENSOR) => {
                let Some(t) = a.t.as_mut() else {
                    return Err(AttrErr::Invalid(format!(
                        "tensor attribute `{name}` has no tensor"
                    )));
                };
                match tensor_data(t, ext) {
                    Ok(d) => Attr::Tensor(d),
                    Err(TensorErr::Unsupported(m)) => {
                        return Err(AttrErr::Unsupported(format!(
                            "tensor attribute `{name}` {m}"
                        )));
                    }
                    Err(TensorErr::Invalid(m)) => {
                        return Err(AttrErr::Invalid(format!("tensor attribute `{name}` {m}")));
                    }
                }
            }
            Ok(AttributeType::GRAPH | AttributeType::GRAPHS) => {
                return Err(AttrErr::Unsupported(format!(
                    "attribute `{name}` is a subgraph (control flow is not supported)"
                )));
            }
            Ok(AttributeType::SPARSE_TENSOR | AttributeType::SPARSE_TENSORS) => {
                return Err(AttrErr::Unsupported(format!(
                    "attribute `{name}`: sparse tensors are not supported"
                )));
            }
            Ok(t) => {
                return Err(AttrErr::Unsupported(format!(
                    "attribute `{name}` has kind {t:?}, which is not supported"
                )));
            }
            Err(code) => {
                return Err(AttrErr::Invalid(format!(
                    "attribute `{name}` has unknown kind {code}"
                )));
            }
        };
        out.insert(name, v);
    }
    Ok(out)
}
