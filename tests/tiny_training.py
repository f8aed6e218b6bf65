"""The smallest model and data set the trainer's tests need: a backbone (conv + BatchNorm) and a head, trained on
pairs that each depend on their index alone (so runs and resumes can be compared exactly)."""

import torch
from torch import Tensor, nn


class TinyNet(nn.Module):
    """A backbone (conv + BatchNorm) and a head: the parts the trainer tells apart (``backbone_lr``)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))  # (N, 1, H, W)


class TinyPairs(torch.utils.data.Dataset):
    """Sample i: an (input (3, size, size), target (1, size, size)) pair drawn from i alone."""

    def __init__(self, size: int = 8) -> None:
        self.size = size

    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x = torch.randn(3, self.size, self.size, generator=torch.Generator().manual_seed(index))
        return x, x.mean(0, keepdim=True) * 2 + 1


def mse_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x).float(), y)  # float: the loss is compared across precisions
