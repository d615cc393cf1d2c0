"""Reference vision models: MLP, a small CNN (digits) and ResNet-8 for 3x32x32."""
from __future__ import annotations

from .. import nn
from ..nn import functional as F


class MLP(nn.Module):
    """Fully connected ReLU network, e.g. MLP((784, 512, 512, 10))."""

    def __init__(self, sizes=(784, 512, 512, 10)):
        super().__init__()
        self.sizes = tuple(sizes)
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])

    def forward(self, x):                      # (B, in)
        x = x.flatten(1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x                               # (B, out)


class SmallCNN(nn.Module):
    """Conv-BN-ReLU x2 + pooling + linear head, for 1x8x8 digits (or any CxHxW)."""

    def __init__(self, in_channels=1, num_classes=10, width=16):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(2 * width * 4, num_classes)

    def forward(self, x):                      # (B, C, H, W)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))   # (B, 2w, H/2, W/2)
        x = F.adaptive_avg_pool2d(x, 2).flatten(1)       # (B, 2w * 2 * 2): keeps coarse layout
        return self.head(x)                    # (B, classes)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut (He et al. 2016)."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet for 3x32x32 inputs; widths (16, 32, 64) with one block each is ResNet-8."""

    def __init__(self, num_classes=10, widths=(16, 32, 64), blocks=(1, 1, 1), in_channels=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, stride=2 if (i > 0 and j == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):                      # (B, 3, 32, 32)
        x = self.layers(self.stem(x))          # (B, 64, 8, 8)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)                      # (B, classes)
