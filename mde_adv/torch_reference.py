"""Independent PyTorch reference of the depth network N and the saliency network G (spec §1–§2).

Written from the spec, not from the Flax code, so that parity tests compare two separate
implementations; also the eager PyTorch baseline of the benchmark suite (benchmarks/). Needs
the optional `torch` extra. Layouts are NCHW; state_dict keys are exactly those of spec §3
without the `module.` prefix (e.g. `E.layer1.0.conv1.weight`, `D.up1.conv1_2.weight`,
`E.base.0.0.weight`). Every channel count c of the paper setting becomes
max(1, round(c·width)); BN eps is 1e-5; resizing is bilinear with align-corners semantics to
explicit sizes.
"""

import torch
import torch.nn.functional as F
from torch import nn

RESNET_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}
DRN_LEVEL_COUNTS = {
    "drn_d_22": (1, 1, 2, 2, 2, 2, 1, 1),
    "drn_d_38": (1, 1, 3, 4, 6, 3, 1, 1),
    "drn_d_54": (1, 1, 3, 4, 6, 3, 1, 1),
}
DRN_CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
DRN_RESIDUAL_LEVELS = ((3, 2, 1), (4, 2, 1), (5, 1, 2), (6, 1, 4))  # (level, stride, dilation)


def scaled(channels: int, width: float) -> int:
    """Channel count of the paper setting scaled by the width multiplier."""
    return max(1, round(channels * width))


def conv(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1, bias: bool = False):
    """'Same'-padded k×k convolution (padding dilation·(k−1)/2)."""
    return nn.Conv2d(cin, cout, k, stride, dilation * (k - 1) // 2, dilation, bias=bias)


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize of an NCHW tensor to `size` (H, W) with align-corners semantics."""
    return F.interpolate(x, size=tuple(int(s) for s in size), mode="bilinear", align_corners=True)


class UpProjection(nn.Module):
    """Resize, then ReLU(BN(conv3×3(ReLU(BN(conv5×5 x)))) + BN(conv5×5 x))."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.bn1 = conv(cin, cout, 5), nn.BatchNorm2d(cout)
        self.conv1_2, self.bn1_2 = conv(cout, cout, 3), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv(cin, cout, 5), nn.BatchNorm2d(cout)

    def forward(self, x, size):
        x = resize(x, size)
        branch_a = self.bn1_2(self.conv1_2(F.relu(self.bn1(self.conv1(x)))))
        branch_b = self.bn2(self.conv2(x))
        return F.relu(branch_a + branch_b)


class ResidualBlock(nn.Module):
    """ResNet v1.5 / DRN block: basic (two 3×3) or bottleneck (1×1, 3×3 with stride, 1×1 ×4)."""

    def __init__(self, cin, planes, cout, stride, dilation, bottleneck):
        super().__init__()
        if bottleneck:
            self.conv1, self.bn1 = conv(cin, planes, 1), nn.BatchNorm2d(planes)
            self.conv2 = conv(planes, planes, 3, stride, dilation)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3, self.bn3 = conv(planes, cout, 1), nn.BatchNorm2d(cout)
        else:
            self.conv1 = conv(cin, planes, 3, stride, dilation)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2, self.bn2 = conv(planes, cout, 3, 1, dilation), nn.BatchNorm2d(cout)
        self.bottleneck = bottleneck
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(conv(cin, cout, 1, stride), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.bottleneck:
            out = self.bn3(self.conv3(F.relu(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


def residual_level(cin, planes, count, stride, dilation, bottleneck):
    """`count` residual blocks; the first may stride; returns (Sequential, output channels)."""
    cout = planes * 4 if bottleneck else planes
    blocks = []
    for i in range(count):
        blocks.append(
            ResidualBlock(cin, planes, cout, stride if i == 0 else 1, dilation, bottleneck)
        )
        cin = cout
    return nn.Sequential(*blocks), cout


class ResNetEncoder(nn.Module):
    """torchvision ResNet-18/34/50 stem and layer1–4; returns (b1, b2, b3, b4)."""

    def __init__(self, encoder: str, width: float):
        super().__init__()
        bottleneck = encoder == "resnet50"
        stem = scaled(64, width)
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        cin, self.block_channels = stem, []
        for k, count in enumerate(RESNET_BLOCKS[encoder]):
            planes = scaled(64 * 2**k, width)
            level, cin = residual_level(cin, planes, count, 1 if k == 0 else 2, 1, bottleneck)
            setattr(self, f"layer{k + 1}", level)
            self.block_channels.append(cin)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        b1 = self.layer1(x)
        b2 = self.layer2(b1)
        b3 = self.layer3(b2)
        return b1, b2, b3, self.layer4(b3)


class DepthDecoder(nn.Module):
    """D: 1×1 conv halving the channels, then four up-projections halving them again."""

    def __init__(self, features: int, width: float):
        super().__init__()
        paper = features  # paper-setting channel count, before the width multiplier
        self.conv = nn.Conv2d(scaled(paper, width), scaled(paper // 2, width), 1, bias=False)
        self.bn = nn.BatchNorm2d(scaled(paper // 2, width))
        paper //= 2
        for k in range(1, 5):
            setattr(self, f"up{k}", UpProjection(scaled(paper, width), scaled(paper // 2, width)))
            paper //= 2
        self.out_channels = scaled(paper, width)

    def forward(self, b1, b2, b3, b4, out_size):
        x = F.relu(self.bn(self.conv(b4)))
        x = self.up1(x, b3.shape[2:])
        x = self.up2(x, b2.shape[2:])
        x = self.up3(x, b1.shape[2:])
        return self.up4(x, out_size)


class MultiScaleFusion(nn.Module):
    """MFF: each b_k up-projected to 16·width channels at the output size; concat; conv 5×5."""

    def __init__(self, block_channels, width: float):
        super().__init__()
        branch = scaled(16, width)
        for k, cin in enumerate(block_channels):
            setattr(self, f"up{k + 1}", UpProjection(cin, branch))
        self.conv = conv(4 * branch, scaled(64, width), 5)
        self.bn = nn.BatchNorm2d(scaled(64, width))
        self.out_channels = scaled(64, width)

    def forward(self, blocks, size):
        ups = [getattr(self, f"up{k + 1}")(b, size) for k, b in enumerate(blocks)]
        return F.relu(self.bn(self.conv(torch.cat(ups, dim=1))))


class Refinement(nn.Module):
    """R: two conv 5×5 + BN + ReLU, then conv 5×5 to one channel with bias and no activation."""

    def __init__(self, cin: int, features: int):
        super().__init__()
        self.conv0, self.bn0 = conv(cin, features, 5), nn.BatchNorm2d(features)
        self.conv1, self.bn1 = conv(features, features, 5), nn.BatchNorm2d(features)
        self.conv2 = conv(features, 1, 5, bias=True)

    def forward(self, x):
        x = F.relu(self.bn0(self.conv0(x)))
        return self.conv2(F.relu(self.bn1(self.conv1(x))))


class TorchDepthNet(nn.Module):
    """N: normalised image [B, 3, H, W] → depth [B, 1, H//2, W//2] in metres."""

    def __init__(self, encoder: str = "resnet50", width: float = 1.0):
        super().__init__()
        self.E = ResNetEncoder(encoder, width)
        paper_features = 2048 if encoder == "resnet50" else 512
        self.D = DepthDecoder(paper_features, width)
        self.MFF = MultiScaleFusion(self.E.block_channels, width)
        self.R = Refinement(
            self.D.out_channels + self.MFF.out_channels, scaled(64 + paper_features // 32, width)
        )

    def forward(self, x):
        out_size = (x.shape[2] // 2, x.shape[3] // 2)
        blocks = self.E(x)
        decoded = self.D(*blocks, out_size)
        fused = self.MFF(blocks, out_size)
        return self.R(torch.cat([decoded, fused], dim=1))


def conv_level(cin, cout, stride, dilation):
    """A DRN-D conv level: conv 3×3, BN, ReLU (keys `.0`, `.1`)."""
    return nn.Sequential(conv(cin, cout, 3, stride, dilation), nn.BatchNorm2d(cout), nn.ReLU())


class DRNEncoder(nn.Module):
    """DRN-D-22/38/54 levels 0–8 as `base.0..8`; returns the features of levels 2, 3 and 8."""

    def __init__(self, encoder: str, width: float):
        super().__init__()
        bottleneck = encoder == "drn_d_54"
        counts = DRN_LEVEL_COUNTS[encoder]
        ch = [scaled(c, width) for c in DRN_CHANNELS]
        levels = [
            nn.Sequential(conv(3, ch[0], 7), nn.BatchNorm2d(ch[0]), nn.ReLU()),
            conv_level(ch[0], ch[0], 1, 1),
            conv_level(ch[0], ch[1], 2, 1),
        ]
        cin = ch[1]
        for level, stride, dilation in DRN_RESIDUAL_LEVELS:
            planes, count = ch[level - 1], counts[level - 1]
            block, cin = residual_level(cin, planes, count, stride, dilation, bottleneck)
            levels.append(block)
        levels.append(conv_level(cin, ch[6], 1, 2))
        levels.append(conv_level(ch[6], ch[7], 1, 1))
        self.base = nn.Sequential(*levels)
        self.out_channels = ch[7]

    def forward(self, x):
        features = []
        for level in self.base:
            x = level(x)
            features.append(x)
        return features[2], features[3], x


class TorchSaliencyNet(nn.Module):
    """G: normalised image [B, 3, H, W] → mask [B, 1, H, W] in (0, 1)."""

    def __init__(self, encoder: str = "drn_d_22", width: float = 1.0):
        super().__init__()
        self.E = DRNEncoder(encoder, width)
        self.D = nn.Module()
        paper = 512
        for k in range(1, 4):
            setattr(self.D, f"up{k}", UpProjection(scaled(paper, width), scaled(paper // 2, width)))
            paper //= 2
        self.D.conv = conv(scaled(paper, width), 1, 3, bias=True)

    def forward(self, x):
        input_size = x.shape[2:]
        level2, level3, features = self.E(x)
        x = self.D.up1(features, level3.shape[2:])
        x = self.D.up2(x, level2.shape[2:])
        x = self.D.up3(x, input_size)
        return torch.sigmoid(self.D.conv(x))
