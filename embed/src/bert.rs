//! The BERT encoder of all-MiniLM-L6-v2, written for throughput on the CPU with candle-core.
//!
//! It computes what Hugging Face's `BertModel` computes for each text (embeddings, then
//! `num_hidden_layers` of self-attention and a GELU feed-forward block, each followed by a
//! residual layer norm) and reads the same safetensors names, but arranges the work for a CPU:
//! - the texts of a batch are packed, not padded: every linear layer is one matrix product over
//!   the (tokens of all texts, hidden) matrix, and attention runs per text over its own tokens
//!   only, which is what a padded batch with an attention mask computes for the real tokens;
//! - query, key and value are one (hidden, 3 × hidden) product; the query's `1/√head_dim` scale
//!   is folded into its weights at load time;
//! - the weights are stored transposed (input-major), as the matrix products read them;
//! - bias, exact (erf) GELU, softmax and residual layer norm are fused passes over the
//!   activations ([`BiasGelu`], [`Softmax`], [`ResidualNorm`]), with rational and polynomial
//!   approximations of erf and exp accurate to about 1e-7 that the compiler vectorizes.

use std::collections::HashMap;

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Device, InplaceOp1, Layout, Result, Shape, Tensor,
    bail,
};
use serde::Deserialize;

/// The fields of a Hugging Face BERT `config.json` the encoder uses.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Config {
    pub(crate) vocab_size: usize,
    pub(crate) hidden_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) num_attention_heads: usize,
    pub(crate) intermediate_size: usize,
    pub(crate) hidden_act: String,
    pub(crate) max_position_embeddings: usize,
    pub(crate) type_vocab_size: usize,
    pub(crate) layer_norm_eps: f64,
    #[serde(default)]
    pub(crate) position_embedding_type: Option<String>,
    #[serde(default)]
    pub(crate) model_type: Option<String>,
}

impl Config {
    /// Why this encoder cannot run the model the configuration describes, if it cannot.
    pub(crate) fn unsupported(&self) -> Option<String> {
        if self.hidden_act != "gelu" {
            return Some(format!(
                "hidden_act is {:?}; only \"gelu\" is supported",
                self.hidden_act
            ));
        }
        if let Some(kind) = &self.position_embedding_type
            && kind != "absolute"
        {
            return Some(format!(
                "position_embedding_type is {kind:?}; only \"absolute\" is supported"
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Some(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        None
    }
}

/// A layer norm's parameters.
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

/// One encoder layer; matrices are (input, output), row-major.
struct Layer {
    qkv: Tensor,
    qkv_bias: Vec<f32>,
    attention_out: Tensor,
    attention_out_bias: Vec<f32>,
    attention_norm: Norm,
    up: Tensor,
    up_bias: Vec<f32>,
    down: Tensor,
    down_bias: Vec<f32>,
    output_norm: Norm,
}

/// The loaded encoder.
pub(crate) struct Bert {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_embeddings: Tensor,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
    max_positions: usize,
}

/// The safetensors of a model file, looked up under the model's name prefix.
struct Weights {
    tensors: HashMap<String, Tensor>,
    prefix: String,
}

impl Weights {
    /// The tensor `name` as f32, which must have `shape`.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let Some(tensor) = self.tensors.get(&full) else {
            bail!("the tensor {full} is missing");
        };
        if tensor.dims() != shape {
            bail!(
                "the tensor {full} has shape {:?}, not {shape:?}",
                tensor.dims()
            );
        }
        tensor.to_dtype(DType::F32)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        self.get(name, &[len])?.to_vec1()
    }

    /// A linear layer's (output, input) weight, transposed to (input, output).
    fn matrix(&self, name: &str, output: usize, input: usize) -> Result<Tensor> {
        self.get(name, &[output, input])?.t()?.contiguous()
    }

    fn norm(&self, name: &str, len: usize, eps: f32) -> Result<Norm> {
        Ok(Norm {
            weight: self.vector(&format!("{name}.weight"), len)?,
            bias: self.vector(&format!("{name}.bias"), len)?,
            eps,
        })
    }
}

impl Bert {
    /// Reads the encoder from the bytes of a safetensors file. The names may carry a `bert.` or
    /// `<model_type>.` prefix, as checkpoints of a model with heads do.
    pub(crate) fn load(safetensors: &[u8], config: &Config) -> Result<Self> {
        if let Some(reason) = config.unsupported() {
            bail!("{reason}");
        }
        let tensors = candle_core::safetensors::load_buffer(safetensors, &Device::Cpu)?;
        let mut prefixes = vec![String::new(), "bert.".to_owned()];
        if let Some(model_type) = &config.model_type {
            prefixes.push(format!("{model_type}."));
        }
        let prefix = prefixes
            .into_iter()
            .find(|p| tensors.contains_key(&format!("{p}embeddings.word_embeddings.weight")))
            .unwrap_or_default();
        let w = Weights { tensors, prefix };

        let hidden = config.hidden_size;
        let inner = config.intermediate_size;
        let heads = config.num_attention_heads;
        let head_dim = hidden / heads;
        // f32 here, as in the model; 1e-12 is far below f32's resolution of a variance, which
        // is how PyTorch computes it in f32 too.
        let eps = config.layer_norm_eps as f32;
        let scale = 1.0 / (head_dim as f64).sqrt();

        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let a = format!("{p}.attention.self");
            let query = (w.matrix(&format!("{a}.query.weight"), hidden, hidden)? * scale)?;
            let key = w.matrix(&format!("{a}.key.weight"), hidden, hidden)?;
            let value = w.matrix(&format!("{a}.value.weight"), hidden, hidden)?;
            let qkv = Tensor::cat(&[query, key, value], 1)?;
            let mut qkv_bias = w.vector(&format!("{a}.query.bias"), hidden)?;
            for b in &mut qkv_bias {
                *b = (f64::from(*b) * scale) as f32;
            }
            qkv_bias.extend(w.vector(&format!("{a}.key.bias"), hidden)?);
            qkv_bias.extend(w.vector(&format!("{a}.value.bias"), hidden)?);
            layers.push(Layer {
                qkv,
                qkv_bias,
                attention_out: w.matrix(
                    &format!("{p}.attention.output.dense.weight"),
                    hidden,
                    hidden,
                )?,
                attention_out_bias: w
                    .vector(&format!("{p}.attention.output.dense.bias"), hidden)?,
                attention_norm: w.norm(&format!("{p}.attention.output.LayerNorm"), hidden, eps)?,
                up: w.matrix(&format!("{p}.intermediate.dense.weight"), inner, hidden)?,
                up_bias: w.vector(&format!("{p}.intermediate.dense.bias"), inner)?,
                down: w.matrix(&format!("{p}.output.dense.weight"), hidden, inner)?,
                down_bias: w.vector(&format!("{p}.output.dense.bias"), hidden)?,
                output_norm: w.norm(&format!("{p}.output.LayerNorm"), hidden, eps)?,
            });
        }

        Ok(Bert {
            word_embeddings: w.get(
                "embeddings.word_embeddings.weight",
                &[config.vocab_size, hidden],
            )?,
            position_embeddings: w.get(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, hidden],
            )?,
            token_type_embeddings: w.get(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, hidden],
            )?,
            embedding_norm: w.norm("embeddings.LayerNorm", hidden, eps)?,
            layers,
            heads,
            head_dim,
            hidden,
            max_positions: config.max_position_embeddings,
        })
    }

    /// The last layer's hidden states, (total tokens, hidden), of texts whose token and token
    /// type ids are concatenated in `ids` and `type_ids`, `lens[i]` tokens for text `i`.
    pub(crate) fn forward(&self, ids: &[u32], type_ids: &[u32], lens: &[usize]) -> Result<Tensor> {
        let total: usize = lens.iter().sum();
        if ids.len() != total || type_ids.len() != total {
            bail!(
                "{} ids and {} type ids for {total} tokens",
                ids.len(),
                type_ids.len()
            );
        }
        if let Some(len) = lens.iter().find(|&&len| len > self.max_positions) {
            bail!(
                "a text of {len} tokens exceeds the {} positions",
                self.max_positions
            );
        }
        let device = &Device::Cpu;
        let positions: Vec<u32> = lens.iter().flat_map(|&len| 0..len as u32).collect();
        let words = self
            .word_embeddings
            .index_select(&Tensor::from_slice(ids, total, device)?, 0)?;
        let types = self
            .token_type_embeddings
            .index_select(&Tensor::from_slice(type_ids, total, device)?, 0)?;
        let positions = self
            .position_embeddings
            .index_select(&Tensor::from_vec(positions, total, device)?, 0)?;
        let mut x = words.apply_op2_no_bwd(
            &(types + positions)?,
            &ResidualNorm {
                bias: None,
                norm: &self.embedding_norm,
            },
        )?;
        for layer in &self.layers {
            x = self.layer(layer, &x, lens)?;
        }
        Ok(x)
    }

    fn layer(&self, layer: &Layer, x: &Tensor, lens: &[usize]) -> Result<Tensor> {
        let total = x.dim(0)?;
        // (3, heads, tokens, head_dim): query, key and value, each head's tokens contiguous.
        let qkv = x.matmul(&layer.qkv)?.apply_op1_no_bwd(&SplitHeads {
            bias: &layer.qkv_bias,
            heads: self.heads,
            head_dim: self.head_dim,
        })?;
        let (queries, keys, values) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let mut context = Vec::with_capacity(lens.len());
        let mut start = 0;
        for &len in lens {
            let q = queries.narrow(1, start, len)?;
            let k = keys.narrow(1, start, len)?;
            let v = values.narrow(1, start, len)?;
            // (heads, len, len), already scaled by the query weights.
            let scores = q.matmul(&k.t()?)?;
            scores.inplace_op1(&Softmax)?;
            // (len, heads, head_dim)
            context.push(scores.matmul(&v)?.transpose(0, 1)?);
            start += len;
        }
        let context = Tensor::cat(&context, 0)?.reshape((total, self.hidden))?;
        let attention = context.matmul(&layer.attention_out)?.apply_op2_no_bwd(
            x,
            &ResidualNorm {
                bias: Some(&layer.attention_out_bias),
                norm: &layer.attention_norm,
            },
        )?;
        let inner = attention.matmul(&layer.up)?;
        inner.inplace_op1(&BiasGelu {
            bias: &layer.up_bias,
        })?;
        inner.matmul(&layer.down)?.apply_op2_no_bwd(
            &attention,
            &ResidualNorm {
                bias: Some(&layer.down_bias),
                norm: &layer.output_norm,
            },
        )
    }
}

/// The contiguous f32 data of a tensor's storage.
fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        (CpuStorage::F32(_), None) => bail!("{op}: the input is not contiguous"),
        _ => bail!("{op}: the input is not f32"),
    }
}

fn f32_slice_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&mut data[start..end]),
        (CpuStorage::F32(_), None) => bail!("{op}: the input is not contiguous"),
        _ => bail!("{op}: the input is not f32"),
    }
}

/// (tokens, 3 × heads × head_dim) plus a bias to (3, heads, tokens, head_dim).
struct SplitHeads<'a> {
    bias: &'a [f32],
    heads: usize,
    head_dim: usize,
}

impl CustomOp1 for SplitHeads<'_> {
    fn name(&self) -> &'static str {
        "split-heads"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = f32_slice(storage, layout, self.name())?;
        let width = 3 * self.heads * self.head_dim;
        let (tokens, columns) = layout.shape().dims2()?;
        if columns != width || self.bias.len() != width {
            bail!("split-heads: {columns} columns, expected {width}");
        }
        let mut dst = vec![0f32; src.len()];
        // Block (part, head) of the destination is tokens × head_dim.
        for (block, (out, bias)) in dst
            .chunks_exact_mut(tokens * self.head_dim)
            .zip(self.bias.chunks_exact(self.head_dim))
            .enumerate()
        {
            let column = block * self.head_dim;
            for (out, row) in out
                .chunks_exact_mut(self.head_dim)
                .zip(src.chunks_exact(width))
            {
                let row = &row[column..column + self.head_dim];
                for ((o, r), b) in out.iter_mut().zip(row).zip(bias) {
                    *o = r + b;
                }
            }
        }
        Ok((
            CpuStorage::F32(dst),
            Shape::from((3, self.heads, tokens, self.head_dim)),
        ))
    }
}

/// `norm(x + bias + residual)` over the last dimension: a BERT layer's output.
struct ResidualNorm<'a> {
    bias: Option<&'a [f32]>,
    norm: &'a Norm,
}

impl CustomOp2 for ResidualNorm<'_> {
    fn name(&self) -> &'static str {
        "residual-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let residual = f32_slice(s2, l2, self.name())?;
        let width = self.norm.weight.len();
        if l1.shape() != l2.shape() || l1.shape().dims().last() != Some(&width) {
            bail!(
                "residual-norm: shapes {:?} and {:?}, width {width}",
                l1.shape(),
                l2.shape()
            );
        }
        let mut dst = vec![0f32; x.len()];
        for ((out, x), residual) in dst
            .chunks_exact_mut(width)
            .zip(x.chunks_exact(width))
            .zip(residual.chunks_exact(width))
        {
            for ((o, x), r) in out.iter_mut().zip(x).zip(residual) {
                *o = x + r;
            }
            if let Some(bias) = self.bias {
                for (o, b) in out.iter_mut().zip(bias) {
                    *o += b;
                }
            }
            let mean = sum(out) / width as f32;
            let variance = sum_of_squares(out, mean) / width as f32;
            let inv = 1.0 / (variance + self.norm.eps).sqrt();
            for ((o, w), b) in out.iter_mut().zip(&self.norm.weight).zip(&self.norm.bias) {
                *o = (*o - mean) * inv * w + b;
            }
        }
        Ok((CpuStorage::F32(dst), l1.shape().clone()))
    }
}

/// Adds a bias to each row, then applies the exact GELU, `x · (1 + erf(x/√2)) / 2`, in place.
struct BiasGelu<'a> {
    bias: &'a [f32],
}

impl InplaceOp1 for BiasGelu<'_> {
    fn name(&self) -> &'static str {
        "bias-gelu"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let data = f32_slice_mut(storage, layout, "bias-gelu")?;
        let width = self.bias.len();
        if layout.shape().dims().last() != Some(&width) {
            bail!("bias-gelu: shape {:?}, width {width}", layout.shape());
        }
        for row in data.chunks_exact_mut(width) {
            for (x, b) in row.iter_mut().zip(self.bias) {
                let v = *x + b;
                *x = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
        Ok(())
    }
}

/// Softmax over the last dimension, in place.
struct Softmax;

impl InplaceOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let data = f32_slice_mut(storage, layout, "softmax")?;
        let Some(&width) = layout.shape().dims().last() else {
            bail!("softmax: a scalar");
        };
        if width == 0 {
            return Ok(());
        }
        for row in data.chunks_exact_mut(width) {
            let max = max(row);
            // Separate passes: a map and a lane-wise sum vectorize, a running sum would not.
            for x in row.iter_mut() {
                *x = exp(*x - max);
            }
            let inv = 1.0 / sum(row);
            for x in row.iter_mut() {
                *x *= inv;
            }
        }
        Ok(())
    }
}

/// Lanes of the reductions below: independent partial results, so the loops vectorize (a single
/// running float total is a dependency chain the compiler must keep in order).
const LANES: usize = 16;

/// The largest element (`-inf` for none).
#[inline(always)]
fn max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (l, x) in lanes.iter_mut().zip(chunk) {
            *l = if *x > *l { *x } else { *l };
        }
    }
    rest.iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// The sum of the elements.
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (l, x) in lanes.iter_mut().zip(chunk) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// The sum of the squared differences from `mean`.
#[inline(always)]
fn sum_of_squares(xs: &[f32], mean: f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (l, x) in lanes.iter_mut().zip(chunk) {
            *l += (x - mean) * (x - mean);
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>()
}

/// erf(x) for f32, within about 1e-7: a rational approximation on [-4, 4] (beyond it erf is ±1
/// in f32), the one Eigen and XLA use; branch-free, so loops over it vectorize.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let p = p * x;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329_3e-3;
    q = q * x2 - 1.426_474e-2;
    p / q
}

/// e^x for f32, within about 2 ulp, for x ≤ 0 as softmax needs (below -87 it returns about
/// 1e-38 rather than 0 or a subnormal): Cephes' expf, with the rounding and the power of two
/// done on the bits so that loops over it vectorize.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 × 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let exponent = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    y * f32::from_bits(((exponent + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::{erf, exp, max, sum, sum_of_squares};

    #[test]
    fn erf_is_accurate() {
        let mut worst = 0f64;
        for i in -6000..=6000 {
            let x = i as f32 / 1000.0;
            let exact = candle_core::cpu::erf::erf_f64(f64::from(x));
            worst = worst.max((f64::from(erf(x)) - exact).abs());
        }
        // A few f32 ulps (6e-8 just below 1).
        assert!(worst < 5e-7, "erf is off by {worst}");
    }

    #[test]
    fn reductions_match_plain_loops() {
        for len in [0, 1, 15, 16, 17, 200, 257] {
            let xs: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let plain_max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&xs), plain_max, "max of {len}");
            let plain_sum: f64 = xs.iter().map(|&x| f64::from(x)).sum();
            assert!(
                (f64::from(sum(&xs)) - plain_sum).abs() < 1e-3,
                "sum of {len}"
            );
            let mean = if len == 0 {
                0.0
            } else {
                plain_sum / len as f64
            };
            let plain_squares: f64 = xs.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum();
            let squares = f64::from(sum_of_squares(&xs, mean as f32));
            assert!(
                (squares - plain_squares).abs() < 1e-3 * plain_squares.max(1.0),
                "squares of {len}"
            );
        }
    }

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        for i in -87_000..=10_000 {
            let x = i as f32 / 1000.0;
            let exact = f64::from(x).exp();
            worst = worst.max((f64::from(exp(x)) - exact).abs() / exact);
        }
        assert!(worst < 3e-7, "exp is off by {worst} relative");
        assert!(exp(-1000.0) < 1e-37);
    }
}
