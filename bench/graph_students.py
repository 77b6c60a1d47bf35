#!/usr/bin/env python3
"""Students written the way a Python user writes them, for the graph-export benchmark
(bench/run_graph_students.sh): a ResNet with residual blocks and a 1x1 shortcut (under 20k
parameters), a MobileNetV2-style student of inverted residuals with depthwise convolutions, and
the MLP-64 student written as a class. Saves each untrained and scripted. The export tests import these classes, at smaller widths.
Usage: graph_students.py OUT_DIR"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class ResNet(nn.Module):
    def __init__(self, width=16, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        if self.residual:
            return x + self.block(x)
        return self.block(x)


class MobileNet(nn.Module):
    def __init__(self, width=16, wide=24, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU6(inplace=True))
        self.features = nn.Sequential(InvertedResidual(width, width, 1, 4), InvertedResidual(width, wide, 2, 4),
                                      InvertedResidual(wide, wide, 1, 4))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(wide, classes)

    def forward(self, x):
        x = self.features(self.stem(x)).mean((2, 3))
        return self.fc(self.dropout(x))


class Mlp(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x):
        return self.net(x.reshape(x.shape[0], -1))


def build():
    torch.manual_seed(0)
    return {"resnet": ResNet(), "mobilenet": MobileNet(), "mlp_class": Mlp()}


if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, model in build().items():
        params = sum(p.numel() for p in model.parameters())
        if name == "resnet":
            assert params <= 20000, params
        torch.jit.script(model).save(os.path.join(out, name + ".pt"))
        print(name, params)
