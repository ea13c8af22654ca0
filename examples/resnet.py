"""resnet.py - the small ResNet of examples/resnet.h in PyTorch: a stem Conv2d 3x3,
BatchNorm2d and ReLU, three BasicBlocks (W, 2W and 4W channels, the last two of
stride 2), AdaptiveAvgPool2d(1), Flatten and Linear(4W, classes).  The model of
`fashion_cnn.py --model resnet`, and of scripts/gen_resnet_fixtures.py (the
fixture test/test_resnet.c loads), which imports it from here.
"""
import torch
import torch.nn as nn


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), shortcut a 1x1 conv and BatchNorm
    when the stride or the channels change (examples/resnet.h)."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        h = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(h + (self.shortcut(x) if hasattr(self, "shortcut") else x))


def resnet(w, classes=10):
    """The ResNet of width w (resnet_new(w, classes) in examples/resnet.h), 1 input channel."""
    return nn.Sequential(nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                         BasicBlock(w, w, 1), BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 4 * w, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, classes))
