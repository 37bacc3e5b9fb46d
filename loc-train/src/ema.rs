//! An exponential moving average of the trained weights (`[train] ema_decay`), as diffusers'
//! `EMAModel` (`src/diffusers/training_utils.py`, `EMAModel.step` and `get_decay`) keeps it:
//! `ema -= (1 - d_t) (ema - w)` after every optimiser update `t`, with `d_t` warming up to
//! the configured decay. Averages are keyed by module path, like AdamW's moments, so a
//! checkpoint saves and restores them exactly.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use loc_core::weights::{read_safetensors, write_safetensors};

/// The averages of every float parameter, flattened, on the plain device.
pub struct Ema {
    decay: f64,
    warmup: bool,
    averages: HashMap<String, Tensor<1>>,
}

impl Ema {
    pub fn new(decay: f64, warmup: bool) -> Self {
        Self { decay, warmup, averages: HashMap::new() }
    }

    /// `d_t` after update `updates` (1-based): 0 at the first update (the average starts as
    /// the weights), then `(1 + s) / (10 + s)`, or with warm-up `1 - (1 + s)^(-2/3)`, for
    /// `s = updates - 1`, never above the configured decay.
    pub fn decay_at(&self, updates: u64) -> f64 {
        let s = updates.saturating_sub(1) as f64;
        if s == 0.0 {
            return 0.0;
        }
        let warming = if self.warmup { 1.0 - (1.0 + s).powf(-2.0 / 3.0) } else { (1.0 + s) / (10.0 + s) };
        warming.min(self.decay)
    }

    /// Folds `weights` after update `updates` into the averages.
    pub fn update<M: Module>(&mut self, weights: &M, updates: u64) {
        let decay = self.decay_at(updates);
        let mut visitor = Fold { ema: self, decay, path: Vec::new() };
        weights.visit(&mut visitor);
    }

    /// `weights` with every parameter replaced by its average (ids and trainability kept).
    pub fn apply<M: Module>(&self, weights: M) -> M {
        weights.map(&mut Replace { ema: self, path: Vec::new() })
    }

    /// Writes the averages (by module path) to `path`.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut names: Vec<&String> = self.averages.keys().collect();
        names.sort();
        let tensors = names
            .into_iter()
            .map(|name| {
                let values =
                    self.averages[name].to_data().convert::<f32>().try_into_vec::<f32>().expect("f32 averages");
                (name.clone(), vec![values.len()], values)
            })
            .collect::<Vec<_>>();
        write_safetensors(path, &tensors)?;
        Ok(())
    }

    /// Restores the averages [`save`](Self::save) wrote.
    pub fn load(decay: f64, warmup: bool, path: &Path, device: &Device) -> anyhow::Result<Self> {
        let averages = read_safetensors(path)?
            .into_iter()
            .map(|(name, tensor)| {
                let values = tensor.floats();
                let n = values.len();
                (name, Tensor::<1>::from_data(TensorData::new(values, [n]), device))
            })
            .collect();
        Ok(Self { decay, warmup, averages })
    }
}

struct Fold<'a> {
    ema: &'a mut Ema,
    decay: f64,
    path: Vec<String>,
}

impl ModuleVisitor for Fold<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().inner();
        let n = value.shape().num_elements();
        let value = value.reshape([n]);
        let average = match self.ema.averages.remove(&self.path.join(".")) {
            Some(average) => average.clone() - (average - value).mul_scalar(1.0 - self.decay),
            None => value,
        };
        self.ema.averages.insert(self.path.join("."), average);
    }
}

struct Replace<'a> {
    ema: &'a Ema,
    path: Vec<String>,
}

impl ModuleMapper for Replace<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(average) = self.ema.averages.get(&self.path.join(".")) else { return param };
        let trainable = param.is_require_grad();
        let (id, tensor, mapper) = param.consume();
        let value = Tensor::from_inner(average.clone().reshape(tensor.shape()));
        Param::from_mapped_value(id, if trainable { value.require_grad() } else { value }, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Module, Debug)]
    struct One {
        a: burn::nn::Linear,
    }

    fn values(model: &One) -> Vec<f32> {
        model.a.weight.val().inner().to_data().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn the_average_follows_diffusers_decay_and_round_trips() {
        let device = Device::flex().autodiff();
        let ema_of = |warmup| Ema::new(0.9, warmup);
        assert_eq!(ema_of(false).decay_at(1), 0.0);
        assert!((ema_of(false).decay_at(3) - 3.0 / 12.0).abs() < 1e-12);
        assert!((ema_of(true).decay_at(3) - (1.0 - 3f64.powf(-2.0 / 3.0))).abs() < 1e-12);
        assert_eq!(ema_of(false).decay_at(1000), 0.9);
        let model = |w: f32| One {
            a: burn::nn::LinearConfig::new(2, 1)
                .with_initializer(burn::nn::Initializer::Constant { value: w as f64 })
                .init(&device),
        };
        let mut ema = ema_of(false);
        ema.update(&model(1.0), 1);
        ema.update(&model(3.0), 2);
        // d_2 = 2 / 11: 1 - (9 / 11) (1 - 3).
        let expected = 1.0 + 9.0 / 11.0 * 2.0;
        assert!(values(&ema.apply(model(0.0))).iter().all(|v| (v - expected).abs() < 1e-6));
        let dir = tempfile::tempdir().unwrap();
        ema.save(&dir.path().join("ema.safetensors")).unwrap();
        let restored = Ema::load(0.9, false, &dir.path().join("ema.safetensors"), &device.clone().inner()).unwrap();
        assert_eq!(values(&restored.apply(model(0.0))), values(&ema.apply(model(0.0))));
    }
}
