"""Built-in vision models in plain torch (torchvision cannot be installed here), random init.

* :func:`small_cnn`: the LEAF FEMNIST CNN (Caldas et al. 2018, "LEAF: A Benchmark for Federated
  Settings"; the model of McMahan et al. 2017): two 5x5 convolutions with 32 and 64 channels
  ('same' padding), each followed by ReLU and 2x2 max pooling, a 2048-unit dense layer and the
  classifier. 6,603,710 parameters on 28x28x1 inputs with 62 classes.
* :func:`resnet18`: ResNet-18 (He et al. 2016), torchvision's layout (BasicBlock [2, 2, 2, 2],
  batch norm, zero-initialised nothing, Kaiming-normal convolutions): 11,689,512 parameters at
  1000 classes on 3 channels. ``stem="cifar"`` replaces the 7x7/2 convolution and max pool with a
  3x3/1 convolution (the usual choice for 32x32 inputs).
* :func:`mobilenet_v2`: MobileNetV2 (Sandler et al. 2018), torchvision's layout (inverted
  residuals, ReLU6, channels rounded to multiples of 8, dropout 0.2): 3,504,872 parameters at
  1000 classes with width multiplier 1.0.

Every factory takes ``input_shape`` ``(C, H, W)`` and ``n_classes``; the flat feature vectors of
a dataset are reshaped to ``input_shape`` by the torch workload (simulator/workloads/
torch_model.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    s = tuple(int(v) for v in input_shape)
    if len(s) != 3:
        raise ValueError(f"a vision model needs images (C, H, W); the dataset gives shape {s}")
    return s


class SmallCNN(nn.Module):
    """LEAF's FEMNIST CNN (see the module docstring)."""

    def __init__(self, input_shape: Sequence[int], n_classes: int, hidden: int = 2048) -> None:
        super().__init__()
        c, h, w = _image_shape(input_shape)
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        flat = 64 * (h // 4) * (w // 4)
        if flat == 0:
            raise ValueError(f"images of {h}x{w} are too small for two 2x2 poolings")
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(),
                                        nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out


def small_cnn(input_shape: Sequence[int], n_classes: int, hidden: int = 2048) -> nn.Module:
    return SmallCNN(input_shape, n_classes, hidden)


# --- ResNet-18 ------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class ResNet18(nn.Module):
    def __init__(self, input_shape: Sequence[int], n_classes: int, stem: str = "imagenet") -> None:
        super().__init__()
        c, _, _ = _image_shape(input_shape)
        if stem == "imagenet":
            self.stem = nn.Sequential(nn.Conv2d(c, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        elif stem == "cifar":
            self.stem = nn.Sequential(nn.Conv2d(c, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                                      nn.ReLU(inplace=True))
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar' (got {stem!r})")
        layers: list[nn.Module] = []
        cin = 64
        for i, cout in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.layers(self.stem(x)))
        out: torch.Tensor = self.fc(torch.flatten(x, 1))
        return out


def resnet18(input_shape: Sequence[int], n_classes: int, stem: str = "imagenet") -> nn.Module:
    return ResNet18(input_shape, n_classes, stem)


# --- MobileNetV2 ----------------------------------------------------------------------------------
def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: round to a multiple of ``divisor``, never below 90%."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, 1, 1))
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))  # expansion t, channels c, repeats n, stride s

    def __init__(self, input_shape: Sequence[int], n_classes: int, width_mult: float = 1.0,
                 dropout: float = 0.2) -> None:
        super().__init__()
        c, _, _ = _image_shape(input_shape)
        cin = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [_conv_bn(c, cin, 3, 2)]
        for t, ch, n, s in self.SETTINGS:
            cout = make_divisible(ch * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(_conv_bn(cin, last, 1, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, n_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        out: torch.Tensor = self.classifier(torch.flatten(x, 1))
        return out


def mobilenet_v2(input_shape: Sequence[int], n_classes: int, width_mult: float = 1.0,
                 dropout: float = 0.2) -> nn.Module:
    return MobileNetV2(input_shape, n_classes, width_mult, dropout)
