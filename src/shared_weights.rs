//! A bundle's weights, held once per context.
//!
//! ONNX Runtime gives each session its own copy of a model's initializers,
//! and a context has one session per worker (see `session.rs`), so every
//! extra worker would hold the bundle's weights again. Instead, the
//! initializers are read from the verified model bytes once per context
//! into tensors that every session is handed with `AddInitializer`: ONNX
//! Runtime then uses that buffer and does not deserialise its own copy.
//!
//! This is an optimisation only. An initializer that is not raw
//! little-endian data of a supported type, or whose bytes cannot be found,
//! is left to ONNX Runtime, which reads it (and reports any fault) as it
//! always has.

use std::collections::HashMap;
use std::sync::Arc;

use ort::value::{DynValue, Tensor};

use crate::manifest::{Bundle, ModelFile};
use crate::onnx_refs::{graph_initializers, InitializerBytes, RawInitializer};

/// One model file's shared initializers: (name, tensor).
pub(crate) type Initializers = Vec<(String, Arc<DynValue>)>;

/// Every model file's shared initializers, by file name.
#[derive(Default)]
pub(crate) struct SharedWeights {
    by_file: HashMap<String, Initializers>,
}

impl SharedWeights {
    /// Reads the initializers of every model file of `bundle`. Never fails:
    /// what cannot be shared is left out.
    pub(crate) fn load(bundle: &Bundle) -> SharedWeights {
        let mut by_file = HashMap::new();
        let mut files: Vec<(&str, &ModelFile)> = Vec::new();
        if let Some(g) = &bundle.graph {
            files.push((&g.file, &g.model));
        }
        if let Some(t) = &bundle.trunk {
            files.push((&t.file, &t.model));
        }
        for st in &bundle.stages {
            files.push((&st.file, &st.model));
        }
        for (file, model) in files {
            if let Some(list) = read_model(bundle, model) {
                by_file.insert(file.to_string(), list);
            }
        }
        SharedWeights { by_file }
    }

    /// Number of shared tensors, over all files.
    pub(crate) fn count(&self) -> usize {
        self.by_file.values().map(Vec::len).sum()
    }

    /// The shared initializers of `file` (empty if none).
    pub(crate) fn for_file(&self, file: &str) -> &[(String, Arc<DynValue>)] {
        self.by_file.get(file).map_or(&[], |v| &v[..])
    }
}

impl std::fmt::Debug for SharedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedWeights({} tensors)", self.count())
    }
}

fn read_model(bundle: &Bundle, model: &ModelFile) -> Option<Initializers> {
    let bytes = &model.bytes.as_ref()?.0;
    let inits = graph_initializers(bytes).ok()?;
    let mut out = Vec::with_capacity(inits.len());
    for init in inits {
        let data = match &init.bytes {
            InitializerBytes::Inline { start, len } => bytes.get(*start..start.checked_add(*len)?),
            InitializerBytes::External {
                location,
                offset,
                length,
            } => {
                let blob = model
                    .data
                    .iter()
                    .filter_map(|&i| bundle.data.get(i))
                    .find(|(name, _)| name == location)
                    .map(|(_, b)| &b.0)?;
                let start = usize::try_from(*offset).ok()?;
                let end = match length {
                    Some(l) => start.checked_add(usize::try_from(*l).ok()?)?,
                    None => blob.len(),
                };
                blob.get(start..end)
            }
        };
        let Some(data) = data else { continue };
        if let Some(v) = to_tensor(&init, data) {
            out.push((init.name, Arc::new(v)));
        }
    }
    Some(out)
}

/// The tensor of `init` from its raw little-endian bytes, for the types the
/// bundles use; None (left to ONNX Runtime) for any other type or a size
/// that does not match the dims.
fn to_tensor(init: &RawInitializer, data: &[u8]) -> Option<DynValue> {
    if init.dims.iter().any(|&d| d < 0) {
        return None;
    }
    let n: usize = init
        .dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d as usize))?;
    let shape = init.dims.clone();
    macro_rules! typed {
        ($t:ty, $w:expr) => {{
            if data.len() != n.checked_mul($w)? {
                return None;
            }
            let v: Vec<$t> = data
                .chunks_exact($w)
                .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $w])))
                .collect();
            Tensor::from_array((shape, v)).ok()?.into_dyn()
        }};
    }
    Some(match init.data_type {
        1 => typed!(f32, 4),
        2 => typed!(u8, 1),
        3 => typed!(i8, 1),
        6 => typed!(i32, 4),
        7 => typed!(i64, 8),
        _ => return None,
    })
}
