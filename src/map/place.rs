//! Place descriptors: one vector per image, made from its local descriptors, whose cosine ranks the map's
//! keyframes for a query image before any local matching (retrieval).
//!
//! Three aggregations over the same local descriptors, so that they can be compared on the same images:
//! - `vlad` (the default): VLAD (Jégou et al. 2010) over a k-means vocabulary — the sum of the residuals
//!   `d − c_k` of the descriptors assigned to each centre `c_k`, each centre's block L2-normalised
//!   (intra-normalisation, Arandjelović & Zisserman 2013), then the whole vector. Residuals keep *where* in
//!   the cell a descriptor lies, which a histogram throws away; AnyLoc's ablation puts VLAD 21 points of
//!   R@1 above GeM pooling.
//! - `bow`: a bag of words over the same vocabulary (the square root of the normalised histogram, the
//!   Hellinger kernel): the classic baseline (DBoW-style, without the tree or tf-idf).
//! - `mean`: the L2-normalised mean of the descriptors (GeM with p = 1; what the map used before).
//!
//! The vocabulary (`k × D` centres, L2-normalised rows) is trained offline by `tools/train_vocabulary.py`
//! and read from a `.npy` file; its SHA-256 names the descriptor, so a map made with another vocabulary is
//! refused rather than compared. VLAD vectors are `k·D` long (4096 for XFeat): an optional PCA
//! ([`Projection`], trained by the same tool, as AnyLoc does) brings them to a length an index of 10^5
//! keyframes can hold and search in milliseconds. Not here: storage, the index, local matching.

use std::path::Path;
use std::sync::Arc;

use ndarray::{Array2, ArrayView2};
use sha2::{Digest, Sha256};

/// Errors of the place descriptor.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// The vocabulary file cannot be read or is not a `k × D` float32 array.
    #[error("place vocabulary {path}: {reason}")]
    Vocabulary {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The vocabulary's descriptor dimension is not the extractor's.
    #[error("place vocabulary has {vocabulary}-D centres, the extractor gives {extractor}-D descriptors: train one for this extractor (tools/train_vocabulary.py)")]
    DimensionMismatch {
        /// Dimension of the centres.
        vocabulary: usize,
        /// Dimension of the descriptors.
        extractor: usize,
    },
}

/// How local descriptors become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// VLAD with intra-normalisation.
    Vlad,
    /// Bag of words (square-rooted histogram).
    Bow,
    /// Mean pooling.
    Mean,
}

impl Aggregation {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vlad => "vlad",
            Self::Bow => "bow",
            Self::Mean => "mean",
        }
    }
}

/// `k` cluster centres of local descriptors (rows, L2-normalised).
#[derive(Debug, Clone)]
pub struct Vocabulary {
    centres: Array2<f32>,
    sha256: String,
}

impl Vocabulary {
    /// Reads a `k × D` float32 `.npy` file.
    pub fn load(path: &Path) -> Result<Self, PlaceError> {
        let err = |reason: String| PlaceError::Vocabulary {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let centres: Array2<f32> =
            ndarray_npy::ReadNpyExt::read_npy(&bytes[..]).map_err(|e| err(e.to_string()))?;
        let sha256 = format!("{:x}", Sha256::digest(&bytes));
        Self::new(centres, sha256).map_err(err)
    }

    /// Centres given in memory (rows are normalised here); `id` names them in maps.
    pub fn new(mut centres: Array2<f32>, id: String) -> Result<Self, String> {
        if centres.nrows() < 2 || centres.ncols() == 0 {
            return Err(format!(
                "{} x {} centres: need at least 2 of dimension >= 1",
                centres.nrows(),
                centres.ncols()
            ));
        }
        for mut row in centres.rows_mut() {
            let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if !(n.is_finite() && n > 0.0) {
                return Err("a centre is zero or not finite".into());
            }
            row.mapv_inplace(|v| v / n);
        }
        Ok(Self {
            centres,
            sha256: id,
        })
    }

    /// Number of centres.
    pub fn len(&self) -> usize {
        self.centres.nrows()
    }

    /// Never true (a vocabulary has at least two centres).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Descriptor dimension.
    pub fn dim(&self) -> usize {
        self.centres.ncols()
    }

    /// The nearest centre of each row of `descriptors` (largest dot product: rows and centres unit-length).
    fn assign(&self, descriptors: ArrayView2<f32>) -> Vec<usize> {
        let scores = descriptors.dot(&self.centres.t());
        scores
            .rows()
            .into_iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (k, &s)| {
                        if s > best.1 {
                            (k, s)
                        } else {
                            best
                        }
                    })
                    .0
            })
            .collect()
    }
}

/// A PCA of VLAD vectors: `x ↦ normalise(P·(x − mean))`.
#[derive(Debug, Clone)]
pub struct Projection {
    mean: Vec<f32>,
    /// `d × D`, one principal direction per row.
    components: Array2<f32>,
    sha256: String,
}

impl Projection {
    /// Reads a `(d + 1) × D` float32 `.npy` file: row 0 the mean, rows 1.. the directions.
    pub fn load(path: &Path) -> Result<Self, PlaceError> {
        let err = |reason: String| PlaceError::Vocabulary {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let a: Array2<f32> =
            ndarray_npy::ReadNpyExt::read_npy(&bytes[..]).map_err(|e| err(e.to_string()))?;
        if a.nrows() < 2 || a.ncols() == 0 || !a.iter().all(|v| v.is_finite()) {
            return Err(err(format!(
                "{} x {}: not a PCA projection",
                a.nrows(),
                a.ncols()
            )));
        }
        Ok(Self {
            mean: a.row(0).to_vec(),
            components: a.slice(ndarray::s![1.., ..]).to_owned(),
            sha256: format!("{:x}", Sha256::digest(&bytes)),
        })
    }

    /// Output dimension.
    pub fn dim(&self) -> usize {
        self.components.nrows()
    }

    /// Input dimension.
    pub fn input_dim(&self) -> usize {
        self.mean.len()
    }

    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let centred = ndarray::Array1::from_iter(x.iter().zip(&self.mean).map(|(a, m)| a - m));
        let mut out = self.components.dot(&centred).to_vec();
        normalize(&mut out);
        out
    }
}

/// Computes the place descriptor of an image from its local descriptors.
#[derive(Debug, Clone)]
pub struct PlaceDescriptor {
    aggregation: Aggregation,
    vocabulary: Option<Arc<Vocabulary>>,
    /// VLAD only: the PCA applied last.
    projection: Option<Arc<Projection>>,
    /// Dimension of the local descriptors.
    local_dim: usize,
}

impl PlaceDescriptor {
    /// An aggregation of `local_dim`-D descriptors; `vlad` and `bow` need a vocabulary of that dimension;
    /// `projection` (used by `vlad` only) must take `k·local_dim` inputs.
    pub fn new(
        aggregation: Aggregation,
        vocabulary: Option<Arc<Vocabulary>>,
        projection: Option<Arc<Projection>>,
        local_dim: usize,
    ) -> Result<Self, PlaceError> {
        if let (Some(v), Some(p), Aggregation::Vlad) = (&vocabulary, &projection, aggregation) {
            if p.input_dim() != v.len() * v.dim() {
                return Err(PlaceError::Vocabulary {
                    path: String::new(),
                    reason: format!(
                        "the PCA projection takes {}-D vectors, VLAD over this vocabulary gives {}-D",
                        p.input_dim(),
                        v.len() * v.dim()
                    ),
                });
            }
        }
        match (&vocabulary, aggregation) {
            (None, Aggregation::Vlad | Aggregation::Bow) => {
                return Err(PlaceError::Vocabulary {
                    path: String::new(),
                    reason: format!("'{}' needs a vocabulary", aggregation.name()),
                })
            }
            (Some(v), Aggregation::Vlad | Aggregation::Bow) if v.dim() != local_dim => {
                return Err(PlaceError::DimensionMismatch {
                    vocabulary: v.dim(),
                    extractor: local_dim,
                })
            }
            _ => {}
        }
        Ok(Self {
            aggregation,
            vocabulary: vocabulary.filter(|_| aggregation != Aggregation::Mean),
            projection: projection.filter(|_| aggregation == Aggregation::Vlad),
            local_dim,
        })
    }

    /// Length of the vectors [`Self::compute`] returns.
    pub fn dim(&self) -> usize {
        if let Some(p) = &self.projection {
            return p.dim();
        }
        match (&self.vocabulary, self.aggregation) {
            (Some(v), Aggregation::Vlad) => v.len() * v.dim(),
            (Some(v), Aggregation::Bow) => v.len(),
            _ => self.local_dim,
        }
    }

    /// What a map records to refuse another descriptor: aggregation, size and vocabulary hash.
    pub fn id(&self) -> String {
        let short = |h: &str| h[..h.len().min(16)].to_string();
        match (&self.vocabulary, &self.projection) {
            (Some(v), Some(p)) => format!(
                "{}{}-{}-pca{}-{}",
                self.aggregation.name(),
                v.len(),
                short(&v.sha256),
                p.dim(),
                short(&p.sha256)
            ),
            (Some(v), None) => format!(
                "{}{}-{}",
                self.aggregation.name(),
                v.len(),
                short(&v.sha256)
            ),
            _ => self.aggregation.name().to_string(),
        }
    }

    /// The unit-length place vector of an image with these local descriptors (rows of `descriptors`,
    /// assumed L2-normalised as every extractor here gives them; non-finite rows are skipped). An image
    /// without descriptors gives the zero vector, which matches nothing.
    pub fn compute(&self, descriptors: &Array2<f32>) -> Vec<f32> {
        let raw = self.aggregate(descriptors);
        match &self.projection {
            Some(p) if raw.iter().any(|&v| v != 0.0) => p.apply(&raw),
            Some(p) => vec![0.0; p.dim()],
            None => raw,
        }
    }

    /// The aggregation before any projection.
    fn aggregate(&self, descriptors: &Array2<f32>) -> Vec<f32> {
        let rows: Vec<usize> = (0..descriptors.nrows())
            .filter(|&i| descriptors.row(i).iter().all(|v| v.is_finite()))
            .collect();
        let raw_dim = match (&self.vocabulary, self.aggregation) {
            (Some(v), Aggregation::Vlad) => v.len() * v.dim(),
            (Some(v), Aggregation::Bow) => v.len(),
            _ => self.local_dim,
        };
        let mut out = vec![0.0f32; raw_dim];
        if rows.is_empty() || descriptors.ncols() != self.local_dim {
            return out;
        }
        let d = descriptors.select(ndarray::Axis(0), &rows);
        match (&self.vocabulary, self.aggregation) {
            (Some(v), Aggregation::Vlad) => {
                let dim = v.dim();
                for (row, k) in d.rows().into_iter().zip(v.assign(d.view())) {
                    let c = v.centres.row(k);
                    let block = &mut out[k * dim..(k + 1) * dim];
                    for ((o, x), m) in block.iter_mut().zip(row.iter()).zip(c.iter()) {
                        *o += x - m;
                    }
                }
                for block in out.chunks_mut(dim) {
                    normalize(block);
                }
            }
            (Some(v), Aggregation::Bow) => {
                for k in v.assign(d.view()) {
                    out[k] += 1.0;
                }
                out.iter_mut().for_each(|h| *h = h.sqrt());
            }
            _ => {
                for row in d.rows() {
                    for (o, x) in out.iter_mut().zip(row.iter()) {
                        *o += x;
                    }
                }
            }
        }
        normalize(&mut out);
        out
    }
}

/// Scales `v` to unit length (left alone when zero).
fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 && n.is_finite() {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Cosine of two unit vectors (their dot product).
pub fn similarity(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn vocab() -> Arc<Vocabulary> {
        Arc::new(Vocabulary::new(array![[1.0, 0.0], [0.0, 1.0]], "t".repeat(64)).unwrap())
    }

    #[test]
    fn vlad_keeps_residual_directions_that_bow_loses() {
        let vlad = PlaceDescriptor::new(Aggregation::Vlad, Some(vocab()), None, 2).unwrap();
        let bow = PlaceDescriptor::new(Aggregation::Bow, Some(vocab()), None, 2).unwrap();
        let s = 0.5f32.sqrt();
        // both images put one descriptor in each cell, on opposite sides of the centres
        let a = array![[0.9, 0.1 * s], [0.1 * s, 0.9]];
        let b = array![[0.9, -0.1 * s], [-0.1 * s, 0.9]];
        let (ba, bb) = (bow.compute(&a), bow.compute(&b));
        assert!((similarity(&ba, &bb) - 1.0).abs() < 1e-6);
        let (va, vb) = (vlad.compute(&a), vlad.compute(&b));
        assert_eq!(va.len(), 4);
        assert!(similarity(&va, &vb) < 0.5, "{}", similarity(&va, &vb));
        assert!((similarity(&va, &va) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn the_projection_keeps_the_ranking_of_vectors_in_its_span() {
        let dir = std::env::temp_dir().join(format!("matcha-pca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pca.npy");
        // mean 0; the first three of the four VLAD coordinates
        let a = ndarray::array![
            [0.0f32, 0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0]
        ];
        ndarray_npy::WriteNpyExt::write_npy(&a, std::fs::File::create(&p).unwrap()).unwrap();
        let proj = Arc::new(Projection::load(&p).unwrap());
        let d =
            PlaceDescriptor::new(Aggregation::Vlad, Some(vocab()), Some(proj.clone()), 2).unwrap();
        assert_eq!(d.dim(), 3);
        assert!(d.id().contains("-pca3-"), "{}", d.id());
        let x = d.compute(&array![[0.9, 0.1], [0.1, 0.9]]);
        assert_eq!(x.len(), 3);
        assert!((similarity(&x, &x) - 1.0).abs() < 1e-5);
        assert!(d.compute(&Array2::zeros((0, 2))).iter().all(|&v| v == 0.0));
        // a projection for another VLAD length is refused
        let wrong = Arc::new(Projection::load(&p).unwrap());
        assert!(PlaceDescriptor::new(Aggregation::Vlad, Some(vocab()), Some(wrong), 3).is_err());
        std::fs::write(&p, b"junk").unwrap();
        assert!(Projection::load(&p).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn empty_or_broken_input_gives_the_zero_vector() {
        let vlad = PlaceDescriptor::new(Aggregation::Vlad, Some(vocab()), None, 2).unwrap();
        assert!(vlad
            .compute(&Array2::zeros((0, 2)))
            .iter()
            .all(|&v| v == 0.0));
        assert!(vlad
            .compute(&array![[f32::NAN, 1.0]])
            .iter()
            .all(|&v| v == 0.0));
        assert!(vlad
            .compute(&array![[1.0, 0.0, 0.0]])
            .iter()
            .all(|&v| v == 0.0));
        let mean = PlaceDescriptor::new(Aggregation::Mean, None, None, 2).unwrap();
        assert_eq!(mean.compute(&array![[3.0, 4.0]]), vec![0.6, 0.8]);
        assert_eq!(mean.id(), "mean");
    }

    #[test]
    fn a_vocabulary_of_another_dimension_or_none_is_refused() {
        assert!(matches!(
            PlaceDescriptor::new(Aggregation::Vlad, Some(vocab()), None, 3),
            Err(PlaceError::DimensionMismatch { .. })
        ));
        assert!(PlaceDescriptor::new(Aggregation::Bow, None, None, 2).is_err());
        assert!(Vocabulary::new(array![[1.0, 0.0]], String::new()).is_err());
        assert!(Vocabulary::new(array![[1.0, 0.0], [0.0, 0.0]], String::new()).is_err());
        let dir = std::env::temp_dir().join(format!("matcha-vocab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.npy");
        std::fs::write(&p, b"not an npy").unwrap();
        assert!(Vocabulary::load(&p).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
