//! Seeded parameter creation: a `VarBuilder` backend that draws initial weights from the
//! project's seeded host RNG (candle's CPU RNG cannot be seeded), storing them in a `VarMap`.

use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand_distr::{Distribution, StandardNormal, Uniform};

use crate::rng::{self, Rng};

/// Creates every variable the model asks for, in the order it asks, from one seeded stream.
pub struct SeededInit {
    varmap: VarMap,
    rng: Mutex<Rng>,
}

impl SeededInit {
    /// A builder whose new variables go into `varmap`, drawn from `seed`.
    pub fn var_builder(varmap: &VarMap, seed: u64, device: &Device) -> VarBuilder<'static> {
        let backend = SeededInit {
            varmap: varmap.clone(),
            rng: Mutex::new(rng::rng(seed)),
        };
        VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone())
    }

    fn draw(&self, shape: &Shape, init: Init) -> candle_core::Result<Vec<f32>> {
        let n = shape.elem_count();
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| candle_core::Error::msg("seeded init: the RNG lock is poisoned"))?;
        let uniform = |rng: &mut Rng, lo: f64, up: f64| -> candle_core::Result<Vec<f32>> {
            let d = Uniform::new(lo as f32, up as f32).map_err(|e| {
                candle_core::Error::msg(format!("seeded init: uniform bounds {lo}..{up}: {e}"))
            })?;
            Ok((0..n).map(|_| d.sample(rng)).collect())
        };
        let normal = |rng: &mut Rng, mean: f64, std: f64| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    let z: f32 = StandardNormal.sample(rng);
                    mean as f32 + std as f32 * z
                })
                .collect()
        };
        Ok(match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Uniform { lo, up } => uniform(&mut rng, lo, up)?,
            Init::Randn { mean, stdev } => normal(&mut rng, mean, stdev),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        uniform(&mut rng, -bound, bound)?
                    }
                    NormalOrUniform::Normal => normal(&mut rng, 0.0, std),
                }
            }
        })
    }
}

impl SimpleBackend for SeededInit {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::msg("seeded init: the VarMap lock is poisoned"))?;
        if let Some(v) = data.get(name) {
            if v.shape() != &s {
                candle_core::bail!("shape mismatch on {name}: {s:?} <> {:?}", v.shape());
            }
            return Ok(v.as_tensor().clone());
        }
        let values = self.draw(&s, h)?;
        let var = Var::from_tensor(&Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("SeededInit creates variables; '{name}' needs a shape")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .is_ok_and(|d| d.contains_key(name))
    }
}
