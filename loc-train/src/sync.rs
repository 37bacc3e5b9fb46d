//! Data-parallel training's gradient synchronisation. Each device holds a replica of the
//! trained weights and computes the gradients of its share of the batch; a [`GradientSync`]
//! turns the shares' gradients into their mean, which every replica then applies with its own
//! optimiser, so the replicas stay equal.
//!
//! - [`HostAverage`] works on every backend: the gradients go to the first device, are
//!   averaged there and sent back.
//! - `Nccl` (the `cuda` feature) lets burn all-reduce each marked parameter's gradient through
//!   NCCL inside `backward()`.
//!
//! burn-train's multi-device strategy sums the gradients; both of these average, so a run's
//! learning rate means the same on any number of devices.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::config::GradientSyncKind;

/// How the replicas' gradients become one.
pub trait GradientSync<M: Module>: Send + Sync {
    /// A replica's weights as this synchronisation needs them, after every fork and update.
    fn prepare(&self, weights: M) -> M {
        weights
    }

    /// The ranks' gradients (rank 0's first, each on its rank's device) as every rank's copy of
    /// their mean, on the rank's device.
    fn reduce(&self, grads: Vec<GradientsParams>, weights: &M, devices: &[Device]) -> Vec<GradientsParams>;
}

/// The configured synchronisation for `devices` (`[train] gradient_sync`).
pub fn start<M: Module>(kind: GradientSyncKind, devices: &[Device]) -> anyhow::Result<Box<dyn GradientSync<M>>> {
    match kind {
        GradientSyncKind::Host => Ok(Box::new(HostAverage)),
        GradientSyncKind::Nccl => nccl::start(devices),
    }
}

/// The mean taken on the first device: each rank's gradient is moved there, summed in rank
/// order, divided by the number of ranks, and a copy moved back to every rank.
pub struct HostAverage;

impl<M: Module> GradientSync<M> for HostAverage {
    fn reduce(&self, grads: Vec<GradientsParams>, weights: &M, devices: &[Device]) -> Vec<GradientsParams> {
        if grads.len() < 2 {
            return grads;
        }
        let devices: Vec<Device> = devices.iter().map(|d| d.clone().inner()).collect();
        let out = devices.iter().map(|_| GradientsParams::new()).collect();
        let mut mean = Mean { grads, devices, out };
        weights.visit(&mut mean);
        mean.out
    }
}

struct Mean {
    grads: Vec<GradientsParams>,
    devices: Vec<Device>,
    out: Vec<GradientsParams>,
}

impl ModuleVisitor for Mean {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let main = &self.devices[0];
        let ranks = self.grads.len();
        // A rank without this parameter's gradient contributes zero to the mean.
        let sum = self
            .grads
            .iter_mut()
            .filter_map(|grads| grads.remove::<D>(param.id))
            .map(|grad| grad.to_device(main))
            .reduce(|a, b| a + b);
        let Some(sum) = sum else { return };
        let mean = sum.div_scalar(ranks as f32);
        for (out, device) in self.out.iter_mut().zip(&self.devices) {
            out.register(param.id, mean.clone().to_device(device));
        }
    }
}

#[cfg(feature = "cuda")]
mod nccl {
    use anyhow::bail;
    use burn::module::{Module, ModuleMapper, Param};
    use burn::optim::GradientsParams;
    use burn::prelude::*;
    use burn::tensor::distributed::{DistributedConfig, DistributedContext, ReduceOperation};

    use super::GradientSync;

    /// burn's collective path: every parameter is marked distributed, and `backward()`
    /// all-reduces its gradient (the mean) across the devices through NCCL before returning.
    pub struct Nccl {
        /// Keeps burn's communication server up for the run.
        _context: DistributedContext,
    }

    pub fn start<M: Module>(devices: &[Device]) -> anyhow::Result<Box<dyn GradientSync<M>>> {
        // SAFETY: only tries to open the library.
        if !unsafe { cudarc::nccl::sys::is_culib_present() } {
            bail!(
                "train.gradient_sync = \"nccl\": NCCL could not be loaded (libnccl.so.2 on the library path): \
                 install NCCL, or set train.gradient_sync = \"host\""
            );
        }
        let config = DistributedConfig { all_reduce_op: ReduceOperation::Mean };
        Ok(Box::new(Nccl { _context: DistributedContext::init(devices.to_vec(), config) }))
    }

    impl<M: Module> GradientSync<M> for Nccl {
        fn prepare(&self, weights: M) -> M {
            struct Mark;
            impl ModuleMapper for Mark {
                fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                    if !param.is_require_grad() {
                        return param;
                    }
                    let id = param.id;
                    param.map(|tensor| tensor.set_distributed(id))
                }
            }
            weights.map(&mut Mark)
        }

        /// `backward()` has already averaged them.
        fn reduce(&self, grads: Vec<GradientsParams>, _weights: &M, _devices: &[Device]) -> Vec<GradientsParams> {
            grads
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod nccl {
    use burn::module::Module;
    use burn::prelude::*;

    use super::GradientSync;

    pub fn start<M: Module>(_devices: &[Device]) -> anyhow::Result<Box<dyn GradientSync<M>>> {
        anyhow::bail!(
            "train.gradient_sync = \"nccl\" needs a build with the `cuda` cargo feature \
             (`cargo build --release --features cuda`); \"host\" works in every build"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Module, Debug)]
    struct Two {
        a: Param<Tensor<1>>,
        b: Param<Tensor<2>>,
    }

    #[test]
    fn host_average_gives_every_rank_the_mean() {
        let device = Device::flex();
        let weights = Two {
            a: Param::from_tensor(Tensor::zeros([2], &device)),
            b: Param::from_tensor(Tensor::zeros([1, 2], &device)),
        };
        let grads = |a: [f32; 2], b: [f32; 2]| {
            let mut grads = GradientsParams::new();
            grads.register(weights.a.id, Tensor::<1>::from_floats(a, &device));
            grads.register(weights.b.id, Tensor::<2>::from_floats([b], &device));
            grads
        };
        let ranks = vec![grads([1.0, 2.0], [0.0, -4.0]), grads([3.0, 6.0], [2.0, 0.0])];
        let devices = [device.clone(), device.clone()];
        let synced = GradientSync::<Two>::reduce(&HostAverage, ranks, &weights, &devices);
        assert_eq!(synced.len(), 2);
        for grads in &synced {
            let a = grads.get::<1>(weights.a.id).unwrap().into_data().try_into_vec::<f32>().unwrap();
            let b = grads.get::<2>(weights.b.id).unwrap().into_data().try_into_vec::<f32>().unwrap();
            assert_eq!((a, b), (vec![2.0, 4.0], vec![1.0, -2.0]), "the mean, not the sum");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn nccl_without_the_cuda_feature_is_a_clear_error() {
        let Err(err) = start::<Two>(GradientSyncKind::Nccl, &[Device::flex()]) else { panic!("NCCL started") };
        assert!(err.to_string().contains("needs a build with the `cuda` cargo feature"), "{err}");
    }
}
