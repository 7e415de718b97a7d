"""Run tangermeme on a PyTorch copy of conv_v2 or motif_pool (in its own venv): ISM, or DeepLIFT/SHAP.

Usage (called by bench_ism.py): python tangermeme_side.py MODEL WEIGHTS.npz SEQS.npy OUT.npz
       (called by bench_deeplift.py): ... OUT.npz --deeplift REFS.npy [--float64]   (REFS: (N, R, L, 4))
Loads the flax weights (keys: the parameter path joined by dots), builds the same network in
PyTorch (SAME padding, tanh GELU, inference BatchNorm, position-major flatten; motif_pool with
its composition/max/mean pooling and, as `motif_pool`, reverse-complement averaging, or without it
as `motif_pool_single_strand`), checks nothing itself, and writes the PyTorch predictions, the ISM
or DeepLIFT/SHAP output and the seconds it took. Every activation and pooling is its own module
(used once), which is what tangermeme's DeepLIFT rules hook; a global max is a MaxPool1d over
the whole length.
"""
import sys
import time

import numpy as np
import torch
from tangermeme.deep_lift_shap import deep_lift_shap
from tangermeme.saturation_mutagenesis import saturation_mutagenesis


class ConvV2(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.conv0 = torch.nn.Conv1d(4, 64, 10, padding="same")
        self.conv1 = torch.nn.Conv1d(64, 64, 10, padding="same")
        self.bn0 = torch.nn.BatchNorm1d(64, eps=1e-5)
        self.bn1 = torch.nn.BatchNorm1d(64, eps=1e-5)
        self.dense0, self.dense1, self.dense2 = (torch.nn.Linear(3200, 128), torch.nn.Linear(128, 64),
                                                 torch.nn.Linear(64, 1))
        with torch.no_grad():
            for i, conv in enumerate((self.conv0, self.conv1)):
                conv.weight.copy_(torch.tensor(w[f"Conv_{i}.kernel"]).permute(2, 1, 0))
                conv.bias.copy_(torch.tensor(w[f"Conv_{i}.bias"]))
            for i, bn in enumerate((self.bn0, self.bn1)):
                _copy_bn(bn, w, f"BatchNorm_{i}")
            for i, dense in enumerate((self.dense0, self.dense1, self.dense2)):
                dense.weight.copy_(torch.tensor(w[f"Dense_{i}.kernel"]).T)
                dense.bias.copy_(torch.tensor(w[f"Dense_{i}.bias"]))
        self.gelus = torch.nn.ModuleList(torch.nn.GELU(approximate="tanh") for _ in range(4))
        self.pools = torch.nn.ModuleList(torch.nn.MaxPool1d(2) for _ in range(2))

    def forward(self, x):  # x: (N, 4, L)
        x = self.pools[0](self.gelus[0](self.bn0(self.conv0(x))))
        x = self.pools[1](self.bn1(self.gelus[1](self.conv1(x))))
        x = x.permute(0, 2, 1).reshape(x.shape[0], -1)  # flax flattens (L, C)
        x = self.gelus[2](self.dense0(x))
        x = self.gelus[3](self.dense1(x))
        return self.dense2(x)


def _copy_bn(bn, w, prefix):
    bn.weight.copy_(torch.tensor(w[f"{prefix}.scale"]))
    bn.bias.copy_(torch.tensor(w[f"{prefix}.bias"]))
    bn.running_mean.copy_(torch.tensor(w[f"{prefix}.mean"]))
    bn.running_var.copy_(torch.tensor(w[f"{prefix}.var"]))


class MotifPool(torch.nn.Module):
    """motif_pool with its defaults: conv 11 -> BN -> ReLU (mean; max-pool 4) -> conv 7 -> BN -> ReLU (max, mean)."""

    def __init__(self, w, length=200, strand_average=True):
        super().__init__()
        self.strand_average = strand_average
        self.relus = torch.nn.ModuleList(torch.nn.ReLU() for _ in range(3))
        self.pool, self.global_max = torch.nn.MaxPool1d(4), torch.nn.MaxPool1d(length // 4)
        t = "_MotifPoolTrunk_0"
        self.conv0 = torch.nn.Conv1d(4, 128, 11, padding="same")
        self.conv1 = torch.nn.Conv1d(128, 128, 7, padding="same")
        self.bn0, self.bn1, self.bn2 = (torch.nn.BatchNorm1d(128, eps=1e-5) for _ in range(3))
        self.dense0, self.dense1 = torch.nn.Linear(384, 128), torch.nn.Linear(128, 1)
        with torch.no_grad():
            for i, conv in enumerate((self.conv0, self.conv1)):
                conv.weight.copy_(torch.tensor(w[f"{t}.Conv_{i}.kernel"]).permute(2, 1, 0))
                conv.bias.copy_(torch.tensor(w[f"{t}.Conv_{i}.bias"]))
            for i, bn in enumerate((self.bn0, self.bn1, self.bn2)):
                _copy_bn(bn, w, f"{t}.BatchNorm_{i}")
            for i, dense in enumerate((self.dense0, self.dense1)):
                dense.weight.copy_(torch.tensor(w[f"{t}.Dense_{i}.kernel"]).T)
                dense.bias.copy_(torch.tensor(w[f"{t}.Dense_{i}.bias"]))

    def trunk(self, x):  # x: (N, 4, L)
        motifs = self.relus[0](self.bn0(self.conv0(x)))
        y = self.relus[1](self.bn1(self.conv1(self.pool(motifs))))
        features = torch.cat([motifs.mean(-1), self.global_max(y)[..., 0], y.mean(-1)], dim=1)
        return self.dense1(self.relus[2](self.bn2(self.dense0(features))))

    def forward(self, x):
        if not self.strand_average:
            return self.trunk(x)
        return (self.trunk(x) + self.trunk(x.flip(1, 2))) / 2  # the reverse complement: flip bases and length


MODELS = {"conv_v2": ConvV2, "motif_pool": MotifPool,
          "motif_pool_single_strand": lambda w: MotifPool(w, strand_average=False)}


def main():
    name, weights, seqs, out = sys.argv[1:5]
    torch.set_num_threads(torch.get_num_threads())
    dtype = torch.float64 if "--float64" in sys.argv else torch.float32
    model = MODELS[name](dict(np.load(weights))).eval().to(dtype)
    x = torch.tensor(np.load(seqs), dtype=dtype).permute(0, 2, 1).contiguous()
    with torch.no_grad():
        logits = model(x)[:, 0].numpy()  # on the CPU, before moving to the device
    device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    if "--deeplift" in sys.argv:
        refs = torch.tensor(np.load(sys.argv[sys.argv.index("--deeplift") + 1]), dtype=dtype)
        attributions = deep_lift_shap(model.to(device), x, references=refs.permute(0, 1, 3, 2).contiguous(),
                                      batch_size=64, device=device, warning_threshold=1e-3, dtype=dtype)
        seconds = time.perf_counter() - start
        np.savez(out, logits=logits, deeplift=attributions.permute(0, 2, 1).numpy(), seconds=seconds)
        return
    ism = saturation_mutagenesis(model.to(device), x, batch_size=256, device=device, verbose=False)
    seconds = time.perf_counter() - start
    np.savez(out, logits=logits, ism=ism.numpy(), seconds=seconds, torch_threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
