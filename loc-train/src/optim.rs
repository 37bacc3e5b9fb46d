//! AdamW with decoupled weight decay, global gradient-norm clipping, warmup + constant/cosine
//! learning rate. The moments are keyed by module path (not by burn's run-time parameter ids),
//! so they are saved to and restored from a safetensors file exactly.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use loc_core::weights::{read_safetensors, write_safetensors};

use crate::config::{LrSchedule, OptimConfig};

/// The learning rate at `step` (0-based) of `total`.
pub fn learning_rate(config: &OptimConfig, step: u64, total: u64) -> f64 {
    let peak = config.learning_rate;
    if step < config.warmup_steps {
        return peak * (step + 1) as f64 / config.warmup_steps as f64;
    }
    match config.schedule {
        LrSchedule::Constant => peak,
        LrSchedule::Cosine => {
            let span = total.saturating_sub(config.warmup_steps).max(1) as f64;
            let progress = ((step - config.warmup_steps) as f64 / span).min(1.0);
            peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

/// Makes every parameter of `module` trainable (loaded models come frozen).
pub fn unfreeze<M: Module>(module: M) -> M {
    struct Unfreeze;
    impl ModuleMapper for Unfreeze {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.set_require_grad(true)
        }
    }
    module.map(&mut Unfreeze)
}

/// The global L2 norm of the gradients of `module`'s parameters.
pub fn grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sum: f64,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.sum += g.powi_scalar(2).sum().into_scalar::<f32>() as f64;
            }
        }
    }
    let mut norm = Norm { grads, sum: 0.0 };
    module.visit(&mut norm);
    norm.sum.sqrt()
}

/// First and second moments of one parameter, flattened.
struct Moments {
    m: Tensor<1>,
    v: Tensor<1>,
}

pub struct AdamW {
    config: OptimConfig,
    moments: HashMap<String, Moments>,
    /// Updates applied so far (bias correction uses it).
    pub updates: u64,
}

impl AdamW {
    pub fn new(config: &OptimConfig) -> Self {
        Self { config: config.clone(), moments: HashMap::new(), updates: 0 }
    }

    /// One update of `module` with `grads` scaled by `grad_scale` (clipping, accumulation).
    pub fn step<M: Module>(&mut self, module: M, grads: GradientsParams, grad_scale: f64, lr: f64) -> M {
        self.updates += 1;
        let t = self.updates as i32;
        let (bias1, bias2) = (1.0 - self.config.beta1.powi(t), 1.0 - self.config.beta2.powi(t));
        let mut mapper = Update { optim: self, grads, grad_scale, lr, bias1, bias2, path: Vec::new() };
        module.map(&mut mapper)
    }

    /// Writes the moments (`m.<path>`, `v.<path>`) to `path`.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut tensors = Vec::new();
        let mut names: Vec<&String> = self.moments.keys().collect();
        names.sort();
        for name in names {
            let moments = &self.moments[name];
            for (prefix, tensor) in [("m", &moments.m), ("v", &moments.v)] {
                let values = tensor.to_data().convert::<f32>().try_into_vec::<f32>().expect("f32 moments");
                tensors.push((format!("{prefix}.{name}"), vec![values.len()], values));
            }
        }
        write_safetensors(path, &tensors)?;
        Ok(())
    }

    /// Restores the moments written by [`save`](Self::save), after `updates` updates.
    pub fn load(config: &OptimConfig, path: &Path, updates: u64, device: &Device) -> anyhow::Result<Self> {
        let raw = read_safetensors(path)?;
        let mut halves: BTreeMap<String, (Option<Tensor<1>>, Option<Tensor<1>>)> = BTreeMap::new();
        for (key, tensor) in raw {
            let values = tensor.floats();
            let n = values.len();
            let value = Tensor::<1>::from_data(TensorData::new(values, [n]), device);
            match key.split_once('.') {
                Some(("m", name)) => halves.entry(name.to_string()).or_default().0 = Some(value),
                Some(("v", name)) => halves.entry(name.to_string()).or_default().1 = Some(value),
                _ => anyhow::bail!("{}: unexpected tensor `{key}` in an optimiser state", path.display()),
            }
        }
        let mut moments = HashMap::new();
        for (name, pair) in halves {
            let (Some(m), Some(v)) = pair else {
                anyhow::bail!("{}: `{name}` lacks one of its two moments", path.display());
            };
            moments.insert(name, Moments { m, v });
        }
        Ok(Self { config: config.clone(), moments, updates })
    }
}

struct Update<'a> {
    optim: &'a mut AdamW,
    grads: GradientsParams,
    grad_scale: f64,
    lr: f64,
    bias1: f64,
    bias2: f64,
    path: Vec<String>,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let c = &self.optim.config;
        let shape = grad.shape();
        let n = shape.num_elements();
        let g = grad.mul_scalar(self.grad_scale).reshape([n]);
        let name = self.path.join(".");
        let previous = self.optim.moments.remove(&name);
        let (m, v) = match previous {
            Some(Moments { m, v }) => (m, v),
            None => (g.zeros_like(), g.zeros_like()),
        };
        let m = m.mul_scalar(c.beta1) + g.clone().mul_scalar(1.0 - c.beta1);
        let v = v.mul_scalar(c.beta2) + g.powi_scalar(2).mul_scalar(1.0 - c.beta2);
        let step = m.clone().div_scalar(self.bias1) / v.clone().div_scalar(self.bias2).sqrt().add_scalar(c.epsilon);
        // The update keeps the parameter's checkpointing strategy: a fresh autodiff tensor gets
        // the default one, and ops mixing strategies are refused.
        let strategy = tensor.gradient_checkpointing_strategy();
        let inner = tensor.inner();
        let updated =
            inner.clone().mul_scalar(1.0 - self.lr * c.weight_decay) - step.reshape(shape).mul_scalar(self.lr);
        self.optim.moments.insert(name, Moments { m, v });
        let updated = Tensor::from_inner(updated);
        let updated = match strategy {
            Some(strategy) => updated.with_gradient_checkpointing_strategy(strategy),
            None => updated,
        };
        Param::from_mapped_value(id, updated.require_grad(), mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OptimConfig;

    #[test]
    fn warmup_then_cosine_reaches_zero_at_the_end() {
        let config =
            OptimConfig { learning_rate: 1.0, warmup_steps: 4, schedule: LrSchedule::Cosine, ..OptimConfig::default() };
        assert_eq!(learning_rate(&config, 0, 104), 0.25);
        assert_eq!(learning_rate(&config, 3, 104), 1.0);
        assert_eq!(learning_rate(&config, 4, 104), 1.0);
        assert!((learning_rate(&config, 54, 104) - 0.5).abs() < 1e-12);
        assert!(learning_rate(&config, 104, 104).abs() < 1e-12);
        let constant = OptimConfig { learning_rate: 2.0, ..OptimConfig::default() };
        assert_eq!(learning_rate(&constant, 1000, 10), 2.0);
    }

    #[derive(Module, Debug)]
    struct Pair {
        a: burn::nn::Linear,
    }

    #[test]
    fn adamw_matches_the_closed_form_and_its_state_round_trips() {
        let device = Device::flex().autodiff();
        let config = OptimConfig { learning_rate: 0.1, weight_decay: 0.5, ..OptimConfig::default() };
        let model = Pair { a: burn::nn::LinearConfig::new(2, 1).init(&device) };
        let w0 = model.a.weight.val().inner().to_data().try_into_vec::<f32>().unwrap();
        let x = Tensor::<2>::from_floats([[1.0, 2.0]], &device);
        let loss = model.a.forward(x.clone()).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        assert!((grad_norm(&model, &grads) - (1.0f64 + 4.0 + 1.0).sqrt()).abs() < 1e-6);
        let mut optim = AdamW::new(&config);
        let model = optim.step(model, grads, 1.0, 0.1);
        // First step: m̂ / sqrt(v̂) = sign(g) = 1 for x = (1, 2).
        let w1 = model.a.weight.val().inner().to_data().try_into_vec::<f32>().unwrap();
        for (before, after) in w0.iter().zip(&w1) {
            assert!((after - (before * (1.0 - 0.05) - 0.1)).abs() < 1e-5, "{before} -> {after}");
        }
        let dir = tempfile::tempdir().unwrap();
        optim.save(&dir.path().join("optim.safetensors")).unwrap();
        let mut restored = AdamW::load(&config, &dir.path().join("optim.safetensors"), 1, &device).unwrap();
        let step = |optim: &mut AdamW, model: Pair| {
            let loss = model.a.forward(x.clone()).powi_scalar(2).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            optim.step(model, grads, 0.5, 0.1)
        };
        let copy = Pair { a: model.a.clone() };
        let a = step(&mut optim, model).a.weight.val().inner().to_data().try_into_vec::<f32>().unwrap();
        let b = step(&mut restored, copy).a.weight.val().inner().to_data().try_into_vec::<f32>().unwrap();
        assert_eq!(a, b);
    }
}
