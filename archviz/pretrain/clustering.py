"""DeepCluster as an objective of `archviz pretrain`: every epoch the backbone's features of the training images are
clustered by k-means, and the network learns to predict each image's cluster, its pseudo-label.

Per epoch (Caron et al. 2018, section 3 and their code): the features of every training image, without augmentation;
k-means into k clusters (contrastive.kmeans, which leaves no cluster empty); a new classifier, its optimiser state
dropped; then the epoch's images drawn so that every cluster is seen equally often. The labels of the dataset are
never read: only their number sets k. A run resumed in the middle of an epoch keeps the checkpoint's clusters, so it
ends with the same weights as an uninterrupted one.

Sources:
- Caron, Bojanowski, Joulin, Douze, "Deep Clustering for Unsupervised Learning of Visual Features", ECCV 2018
  (section 3.3: uniform sampling over the pseudo-labels; figure 2: the NMI between consecutive epochs' clusters).
- facebookresearch/deepcluster main.py: the classifier made anew each epoch, weights N(0, 0.01), biases 0.
- NMI: Strehl and Ghosh, "Cluster Ensembles", JMLR 2002, with the arithmetic mean of the entropies (scikit-learn's
  normalized_mutual_info_score default).
"""

from __future__ import annotations

import math

from archviz.pretrain.objectives import CLUSTERS_PER_CLASS, Objective
from archviz.pretrain.choices import Task

HEAD_INIT_STD = 0.01  # the reference code's classifier weights, N(0, 0.01); its biases start at 0
FEATURE_BATCH_FACTOR = 4  # feature extraction holds no gradients: batches this many times the training batch


class DeepCluster(Objective):
    """The k-means cluster of each image's features, recomputed every epoch, as its class (Caron et al. 2018)."""

    task = Task.DEEPCLUSTER
    answers_per_image = 1

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.k = min(CLUSTERS_PER_CLASS * self.classes, self.train_size)
        self.labels = None  # (N,) int64: the pseudo-label of every training image, this epoch's
        self.centroids = None  # (k, D) float32: unit-norm features' cluster means
        self.nmi: list[float] = []  # per epoch from the second: NMI(previous clusters, new clusters)

    def head(self, features):
        from torch import nn

        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(features), self.k))

    def inputs(self, x, index, generator):
        if self.labels.device != x.device:
            self.labels = self.labels.to(x.device)
        return x, self.labels[index.to(x.device)]

    def eval_loss(self, net, x, y, start, generator):
        """Each image's pseudo-label: the nearest centroid to its unit-norm features; y (the dataset's) is unused."""
        import torch.nn.functional as F

        from archviz.pretrain.tasks import nearest

        features = net.encode(x)
        unit = F.normalize(features.flatten(1).float(), dim=1)
        targets = nearest(unit, self.centroids.to(unit.device))
        return self.loss(net.head(features), targets, None)

    def epoch_begin(self, setup, state, epoch):
        if state.position.batch:  # resumed in the middle of the epoch: the checkpoint's clusters and head
            return
        import torch

        from archviz.pretrain.contrastive import kmeans

        features = encode_all(setup, setup.images["train"])
        labels, centroids = kmeans(features, self.k, generator=torch.Generator().manual_seed(
            epoch_seed(self.seed, epoch, stream=0)))
        # under torchrun each rank clusters alone; rank 0's clusters, so every rank trains on the same classes
        labels, centroids = setup.ranks.gather_objects((labels.cpu(), centroids.cpu()))[0]
        if self.labels is not None:
            self.nmi.append(normalized_mutual_information(self.labels.cpu(), labels, self.k))
        self.labels, self.centroids = labels, centroids
        reset_classifier(state, setup.net.head[-1], seed=epoch_seed(self.seed, epoch, stream=1))

    def epoch_order(self, setup, state, epoch):
        """Every cluster drawn equally often: images with replacement, weighted 1 / their cluster's size."""
        import torch

        from archviz.pretrain.contrastive import balanced_sampling_weights

        weights = balanced_sampling_weights(self.labels.cpu(), self.k)
        return torch.multinomial(weights, self.train_size, replacement=True, generator=state.order)

    def epoch_figures(self) -> dict:
        """NMI between this epoch's clusters and the previous epoch's (Caron et al. fig. 2: it rises as the
        clusters settle); none in the first epoch."""
        return {"cluster_nmi": self.nmi[-1]} if self.nmi else {}

    def examples(self, x, generator):
        """The images as they are: each one's class is its cluster, found only while training."""
        return list(x), [f"class: its cluster of {self.k}"] * x.shape[0], x.shape[0]

    def state(self):
        if self.labels is None:  # no epoch has begun
            return {}
        return {"pseudo_labels": self.labels.cpu(), "centroids": self.centroids.cpu(), "nmi": list(self.nmi)}

    def load_state(self, state):
        if "pseudo_labels" not in state:
            return
        self.labels, self.centroids = state["pseudo_labels"], state["centroids"]
        self.nmi = list(state["nmi"])

    def describe(self) -> str:
        per_class = (f"{CLUSTERS_PER_CLASS} per class of the dataset" if self.k == CLUSTERS_PER_CLASS * self.classes
                     else "one per training image")
        return (f"k-means of the backbone's features into {self.k} clusters ({per_class}) at every epoch; the head, "
                "made anew each epoch, predicts each image's cluster; clusters drawn equally often")


def encode_all(setup, images):
    """The backbone's features (N, ...) of a split as setup.images holds it: no augmentation, eval mode."""
    import torch

    size = setup.settings.batch_size * FEATURE_BATCH_FACTOR
    setup.net.eval()
    with torch.no_grad():
        features = [setup.net.encode(setup.make_batch(images[start:start + size])).float()
                    for start in range(0, len(images), size)]
    setup.net.train()
    return torch.cat(features)


def epoch_seed(seed: int, epoch: int, *, stream: int) -> int:
    """A seed of its own for each (run seed, epoch, stream), unrelated across runs of different seeds."""
    import numpy as np

    return int(np.random.SeedSequence((seed, epoch, stream)).generate_state(1)[0])


def reset_classifier(state, linear, *, seed: int) -> None:
    """The linear layer drawn anew in place, weights N(0, HEAD_INIT_STD) and biases 0 (the reference code's init),
    from a generator of `seed`; its state in the loop's optimiser (state.optimizer) dropped, so Adam's moments start
    again as for a new layer."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(linear.weight.shape, generator=generator) * HEAD_INIT_STD
    with torch.no_grad():  # in place: the optimiser keeps the same parameters
        linear.weight.copy_(weight)
        linear.bias.zero_()
    for parameter in linear.parameters():
        state.optimizer.state.pop(parameter, None)


def normalized_mutual_information(first, second, k: int) -> float:
    """NMI(U, V) = I(U; V) / ((H(U) + H(V)) / 2) of two labellings (N,) into k clusters: 1 when they agree up to
    the clusters' names, near 0 when independent (Strehl and Ghosh 2002; the arithmetic mean of the entropies, as
    scikit-learn's default). 1 when both put every image in one cluster.

    >>> import torch
    >>> round(normalized_mutual_information(torch.tensor([0, 0, 1, 1]), torch.tensor([1, 1, 0, 0]), 2), 6)
    1.0
    """
    import torch

    joint = torch.bincount(first * k + second, minlength=k * k).view(k, k).double() / len(first)  # (k, k)
    p, q = joint.sum(dim=1), joint.sum(dim=0)
    nonzero = joint > 0
    mutual = (joint[nonzero] * (joint[nonzero] / (p[:, None] * q[None, :])[nonzero]).log()).sum()
    entropies = -(p[p > 0] * p[p > 0].log()).sum() - (q[q > 0] * q[q > 0].log()).sum()
    return 1.0 if entropies <= 0 else float(2 * mutual / entropies)
