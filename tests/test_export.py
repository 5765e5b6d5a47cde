"""ONNX and TorchScript export of the sampling generator, checked against PyTorch's own outputs."""

import pytest
import torch
from torch import nn

from lightning_gen import VAE, GANModule
from lightning_gen.export import ONNX_NAME, TORCHSCRIPT_NAME, export_onnx, export_torchscript, sampling_generator
from lightning_gen.hub import FOLDER_FILES

UNIT_ROUNDOFF = 2.0**-24  # float32


def _reordering_bound(network: nn.Module, activation_scale: float = 8.0) -> float:
    """Worst-case difference between two float32 evaluations that sum each layer's products in another order.

    A dot product of K terms carries at most ~K u sum|terms| of rounding error (Higham, Accuracy and Stability of
    Numerical Algorithms, 3.1), whatever the order, so two orders differ by at most twice that. Errors of later
    layers add up; sum|terms| is bounded by ``activation_scale`` (activations after batch norm are O(1), tanh
    outputs are within 1 and shrink errors). K is each layer's fan-in: in_channels x kernel area for
    (transposed) convolutions, in_features for linear layers.
    """
    fan_ins = []
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            in_channels = module.in_channels // module.groups
            fan_ins.append(in_channels * module.kernel_size[0] * module.kernel_size[1])
        elif isinstance(module, nn.Linear):
            fan_ins.append(module.in_features)
    return 2 * UNIT_ROUNDOFF * activation_scale * sum(fan_ins)


def _trained_looking(model):
    """Outputs that span [-1, 1] (He init, not DCGAN's N(0, 0.02), under which an output layer's tanh is
    nearly the identity and a missing one would go unnoticed), and batch norm running statistics that are not
    (0, 1), so the export must use them (eval mode) to match."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


MODELS = {
    "gan": lambda: GANModule(image_size=16, channels=1, latent_dim=8, width=4),
    "conditional-ema-gan": lambda: GANModule(image_size=16, channels=3, latent_dim=8, width=4, num_classes=3, ema_decay=0.9),
    "vae": lambda: VAE(image_size=16, channels=1, latent_dim=4, width=8),
}


def _inputs(model, batch, seed=0):
    z = torch.randn(batch, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(batch) % model.num_classes if model.num_classes else None
    return z, labels


def _reference(model, z, labels):
    with torch.no_grad():
        return model.eval()._sample_batch(z, labels).float()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_matches_pytorch_at_any_batch_size(name, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="ONNX checks need onnxruntime: pip install 'lightning-gen[export]'")
    model = _trained_looking(MODELS[name]()).train()  # exported from training mode on purpose
    path = export_onnx(model, tmp_path / ONNX_NAME)
    assert model.training  # the export's eval mode was undone
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == (["z", "labels"] if model.num_classes else ["z"])
    assert session.get_outputs()[0].name == "images"
    bound = _reordering_bound(sampling_generator(model).generator)
    for batch in (1, 5):  # the trace used 2: the batch axis is dynamic
        z, labels = _inputs(model, batch, seed=batch)
        feed = {"z": z.numpy()} | ({"labels": labels.numpy()} if labels is not None else {})
        (images,) = session.run(None, feed)
        expected = _reference(model, z, labels)
        assert images.shape == tuple(expected.shape)
        difference = (torch.from_numpy(images) - expected).abs().max().item()
        assert difference <= bound, f"ONNX differs from PyTorch by {difference:.3g} > bound {bound:.3g}"


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_matches_pytorch_at_any_batch_size(name, tmp_path):
    model = _trained_looking(MODELS[name]()).train()
    path = export_torchscript(model, tmp_path / TORCHSCRIPT_NAME)
    assert model.training
    loaded = torch.jit.load(str(path))
    for batch in (1, 5):
        z, labels = _inputs(model, batch, seed=batch)
        with torch.no_grad():
            images = loaded(z, labels) if labels is not None else loaded(z)
        # The traced graph calls the same ATen kernels on the same shapes as eager PyTorch.
        torch.testing.assert_close(images, _reference(model, z, labels), atol=0, rtol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_the_ema_generator_is_what_gets_exported(tmp_path):
    model = GANModule(image_size=16, channels=1, latent_dim=8, width=4, ema_decay=0.5)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(0.1)  # the raw generator now differs from the EMA copy
    assert sampling_generator(model).generator is model.generator_ema.module
    loaded = torch.jit.load(str(export_torchscript(model, tmp_path / "g.pt")))
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(loaded(z), model.generator_ema.module.eval()(z))
        assert not torch.equal(loaded(z), model.generator.eval()(z))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_any_generator_module_exports(tmp_path):
    class TinyGenerator(nn.Module):
        latent_dim, num_classes = 6, 0

        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(6, 3 * 8 * 8)

        def forward(self, z):
            return torch.tanh(self.linear(z)).reshape(-1, 3, 8, 8)

    generator = TinyGenerator()
    loaded = torch.jit.load(str(export_torchscript(generator, tmp_path / "g.pt")))
    z = torch.randn(4, 6)
    with torch.no_grad():
        assert torch.equal(loaded(z), generator(z))
    ort = pytest.importorskip("onnxruntime", reason="ONNX checks need onnxruntime: pip install 'lightning-gen[export]'")
    session = ort.InferenceSession(str(export_onnx(generator, tmp_path / "g.onnx")), providers=["CPUExecutionProvider"])
    (images,) = session.run(None, {"z": z.numpy()})
    with torch.no_grad():
        difference = (torch.from_numpy(images) - generator(z)).abs().max().item()
    assert difference <= _reordering_bound(generator)
    with pytest.raises(TypeError, match="latent_dim"):
        export_onnx(nn.Linear(2, 2), tmp_path / "bad.onnx")


def test_export_file_names_are_pushed_with_a_folder():
    assert ONNX_NAME in FOLDER_FILES and TORCHSCRIPT_NAME in FOLDER_FILES
