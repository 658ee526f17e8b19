"""PyTorch baselines for `nas-mpi bench`: the DARTS networks with the reference's module structure.

Written for nas-mpi (not copied from quark0/darts or yuhuixu1993/PC-DARTS), with the same modules,
the same semantics and the same state-dict names, so that a `nas-mpi export` loads with
load_state_dict(strict=True) and a step here costs what a step of the reference code costs:

  NetworkCIFAR       evaluation network from a genotype (reference model.NetworkCIFAR), with the
                     auxiliary head and drop path
  SearchNetwork      DARTS supernet (reference model_search.Network), alphas as parameters
  PCSearchNetwork    PC-DARTS supernet (yuhuixu1993/PC-DARTS model_search.Network), K = 4, betas

Used by scripts/bench-pytorch, which runs one configuration per process (peak RSS is per process):

  python pytorch_reference.py train  --genotype DARTS_V2 --channels 16 --layers 8 --batch 64 --drop-path 0.2 [--auxiliary]
  python pytorch_reference.py search --method darts|pc-darts --order 1|2 --channels 8 --layers 5 --input 1x28x28 --batch 32
  python pytorch_reference.py roofline ...   (the same flags: analytic FLOPs and minimum bytes per op kind)
  python pytorch_reference.py load FILE.safetensors train|search|pc-search ...   (strict load check)

Each timing prints the fields `nas-mpi bench` prints: min/median/max step seconds, images/s,
GFLOP/s from the analytic count (forward 2 x MACs, backward twice that) and peak resident memory.
"""
import argparse
import json
import resource
import statistics
import struct
import sys
import time
from collections import namedtuple

import torch
import torch.nn as nn
import torch.nn.functional as F

PRIMITIVES = ['none', 'max_pool_3x3', 'avg_pool_3x3', 'skip_connect',
              'sep_conv_3x3', 'sep_conv_5x5', 'dil_conv_3x3', 'dil_conv_5x5']

Genotype = namedtuple('Genotype', 'normal normal_concat reduce reduce_concat')
GENOTYPES = {
    'DARTS_V1': Genotype(
        normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1),
                ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)],
        normal_concat=[2, 3, 4, 5],
        reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0),
                ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)],
        reduce_concat=[2, 3, 4, 5]),
    'DARTS_V2': Genotype(
        normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
                ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)],
        normal_concat=[2, 3, 4, 5],
        reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1),
                ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)],
        reduce_concat=[2, 3, 4, 5]),
}


def load_genotype(name):
    """A built-in name, or a file holding the printed form `Genotype(normal=[...], ...)`."""
    if name in GENOTYPES:
        return GENOTYPES[name]
    with open(name) as f:
        text = f.read().replace('range(2, 6)', '[2, 3, 4, 5]')
    return eval(text, {'Genotype': Genotype, '__builtins__': {}})


# MARK: - Operations (reference operations.py: same nesting, so the same state-dict names)

class ReLUConvBN(nn.Module):
    def __init__(self, c_in, c_out, kernel, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(inplace=False),
                                nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
                                nn.BatchNorm2d(c_out, affine=affine))

    def forward(self, x):
        return self.op(x)


class DilConv(nn.Module):
    """ReLU, depthwise k x k with dilation, 1x1, BN."""
    def __init__(self, c_in, c_out, kernel, stride, padding, dilation, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine))

    def forward(self, x):
        return self.op(x)


class SepConv(nn.Module):
    """Two (ReLU, depthwise k x k, 1x1, BN) blocks, the first with the stride."""
    def __init__(self, c_in, c_out, kernel, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, bias=False),
            nn.BatchNorm2d(c_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=1, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine))

    def forward(self, x):
        return self.op(x)


class Identity(nn.Module):
    def forward(self, x):
        return x


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return x[:, :, ::self.stride, ::self.stride].mul(0.)


class FactorizedReduce(nn.Module):
    """ReLU, two 1x1 stride-2 convolutions (the second on the input shifted by one pixel), concat, BN."""
    def __init__(self, c_in, c_out, affine=True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def make_op(name, c, stride, affine):
    if name == 'none':
        return Zero(stride)
    if name == 'max_pool_3x3':
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == 'avg_pool_3x3':
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == 'skip_connect':
        return Identity() if stride == 1 else FactorizedReduce(c, c, affine=affine)
    kernel = int(name[-1])
    if name.startswith('sep_conv'):
        return SepConv(c, c, kernel, stride, kernel // 2, affine=affine)
    if name.startswith('dil_conv'):
        return DilConv(c, c, kernel, stride, kernel - 1, 2, affine=affine)
    raise ValueError('unknown op ' + name)


def preprocess0(c_prev_prev, c, reduction_prev, affine):
    return FactorizedReduce(c_prev_prev, c, affine) if reduction_prev else ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine)


def drop_path(x, p):
    """Zeroes whole samples with probability p, scales the rest by 1/(1-p) (in place, as the reference)."""
    keep = 1. - p
    mask = torch.empty(x.size(0), 1, 1, 1, dtype=x.dtype).bernoulli_(keep)
    return x.div_(keep).mul_(mask)


def stages(layers):
    """(reduction, reduction_prev) of each cell: reductions at layers/3 and 2*layers/3."""
    out, prev = [], False
    for i in range(layers):
        r = i in (layers // 3, 2 * layers // 3)
        out.append((r, prev))
        prev = r
    return out


# MARK: - Evaluation network (reference model.py)

class Cell(nn.Module):
    def __init__(self, genotype, c_prev_prev, c_prev, c, reduction, reduction_prev):
        super().__init__()
        self.preprocess0 = preprocess0(c_prev_prev, c, reduction_prev, True)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0)
        edges, self._concat = (genotype.reduce, genotype.reduce_concat) if reduction else (genotype.normal, genotype.normal_concat)
        self._indices = [j for _, j in edges]
        self._ops = nn.ModuleList(make_op(name, c, 2 if reduction and j < 2 else 1, True) for name, j in edges)
        self.multiplier = len(self._concat)

    def forward(self, s0, s1, drop_prob):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(len(self._ops) // 2):
            hs = []
            for k in (2 * i, 2 * i + 1):
                h = self._ops[k](states[self._indices[k]])
                if self.training and drop_prob > 0. and not isinstance(self._ops[k], Identity):
                    h = drop_path(h, drop_prob)
                hs.append(h)
            states.append(hs[0] + hs[1])
        return torch.cat([states[i] for i in self._concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """On an 8x8 map: ReLU, 5x5 average pool stride 3 (to 2x2), 1x1 conv 128, BN, ReLU, 2x2 conv 768, BN, ReLU, linear."""
    def __init__(self, c, classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),  # in place as the reference: every other reader of this map starts with a ReLU
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, classes)

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


class NetworkCIFAR(nn.Module):
    def __init__(self, c, classes, layers, auxiliary, genotype, in_channels=3):
        super().__init__()
        self._layers = layers
        self._auxiliary = auxiliary
        self.drop_path_prob = 0.
        c_curr = 3 * c
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, c
        self.cells = nn.ModuleList()
        for i, (reduction, reduction_prev) in enumerate(stages(layers)):
            if reduction:
                c_curr *= 2
            cell = Cell(genotype, c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if i == 2 * layers // 3:
                c_auxiliary = c_prev
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadCIFAR(c_auxiliary, classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, classes)

    def forward(self, x):
        logits_aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == 2 * self._layers // 3 and self._auxiliary and self.training:
                logits_aux = self.auxiliary_head(s1)
        out = self.global_pooling(s1)
        return self.classifier(out.view(out.size(0), -1)), logits_aux


# MARK: - Supernets (reference model_search.py, DARTS and PC-DARTS)

class MixedOp(nn.Module):
    """All primitives on one edge, summed with the softmaxed alphas; pools get a non-affine BN."""
    def __init__(self, c, stride):
        super().__init__()
        self._ops = nn.ModuleList(
            nn.Sequential(make_op(p, c, stride, False), nn.BatchNorm2d(c, affine=False)) if 'pool' in p
            else make_op(p, c, stride, False) for p in PRIMITIVES)

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self._ops))


class PartialMixedOp(nn.Module):
    """PC-DARTS: the first C/K channels go through the primitives, the rest bypass (2x2 max pool on
    reduction edges); concatenated, then channel-shuffled with K groups."""
    def __init__(self, c, stride, k=4):
        super().__init__()
        self.k = k
        self.mp = nn.MaxPool2d(2, 2)
        self._ops = nn.ModuleList(
            nn.Sequential(make_op(p, c // k, stride, False), nn.BatchNorm2d(c // k, affine=False)) if 'pool' in p
            else make_op(p, c // k, stride, False) for p in PRIMITIVES)

    def forward(self, x, weights):
        part = x.shape[1] // self.k
        active, bypass = x[:, :part], x[:, part:]
        out = sum(w * op(active) for w, op in zip(weights, self._ops))
        if out.shape[2] != x.shape[2]:
            bypass = self.mp(bypass)
        y = torch.cat([out, bypass], dim=1)
        n, ch, h, w = y.shape
        return y.view(n, self.k, ch // self.k, h, w).transpose(1, 2).contiguous().view(n, ch, h, w)


class SearchCell(nn.Module):
    def __init__(self, c_prev_prev, c_prev, c, reduction, reduction_prev, mixed, steps=4, multiplier=4):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = preprocess0(c_prev_prev, c, reduction_prev, False)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=False)
        self._steps, self._multiplier = steps, multiplier
        self._ops = nn.ModuleList(mixed(c, 2 if reduction and j < 2 else 1) for i in range(steps) for j in range(2 + i))

    def forward(self, s0, s1, weights, edge_weights=None):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self._steps):
            s = sum((1 if edge_weights is None else edge_weights[offset + j]) * self._ops[offset + j](h, weights[offset + j])
                    for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self._multiplier:], dim=1)


class SearchNetwork(nn.Module):
    """The DARTS supernet; with partial=True the PC-DARTS one (partial channels and edge betas).
    Alphas (and betas) are registered parameters here, so they are in the state dict under the
    names nas-mpi exports (the reference keeps them outside it)."""
    def __init__(self, c, classes, layers, in_channels=3, partial=False, steps=4, multiplier=4):
        super().__init__()
        self._steps = steps
        c_curr = 3 * c
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, c
        mixed = PartialMixedOp if partial else MixedOp
        self.cells = nn.ModuleList()
        for reduction, reduction_prev in stages(layers):
            if reduction:
                c_curr *= 2
            self.cells.append(SearchCell(c_prev_prev, c_prev, c_curr, reduction, reduction_prev, mixed, steps, multiplier))
            c_prev_prev, c_prev = c_prev, multiplier * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, classes)
        edges = sum(2 + i for i in range(steps))
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(edges, len(PRIMITIVES)))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(edges, len(PRIMITIVES)))
        self.partial = partial
        if partial:
            self.betas_normal = nn.Parameter(1e-3 * torch.randn(edges))
            self.betas_reduce = nn.Parameter(1e-3 * torch.randn(edges))

    def arch_parameters(self):
        names = ('alphas_normal', 'alphas_reduce', 'betas_normal', 'betas_reduce') if self.partial else ('alphas_normal', 'alphas_reduce')
        return [getattr(self, n) for n in names]

    def weights(self):
        arch = set(id(p) for p in self.arch_parameters())
        return [p for p in self.parameters() if id(p) not in arch]

    def _edge_weights(self, betas):
        """Softmax of the betas over each node's inputs (2, 3, 4, 5 edges)."""
        parts, start = [], 0
        for i in range(self._steps):
            parts.append(F.softmax(betas[start:start + 2 + i], dim=-1))
            start += 2 + i
        return torch.cat(parts)

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            alphas = self.alphas_reduce if cell.reduction else self.alphas_normal
            edge = None
            if self.partial:
                edge = self._edge_weights(self.betas_reduce if cell.reduction else self.betas_normal)
            s0, s1 = s1, cell(s0, s1, F.softmax(alphas, dim=-1), edge)
        out = self.global_pooling(s1)
        return self.classifier(out.view(out.size(0), -1))


# MARK: - Steps (reference train.py, train_search.py, architect.py)

def train_step(net, opt, x, y, aux_weight=0.4, clip=5.):
    opt.zero_grad()
    logits, aux = net(x)
    loss = F.cross_entropy(logits, y)
    if aux is not None:
        loss = loss + aux_weight * F.cross_entropy(aux, y)
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), clip)
    opt.step()


class SearchStep:
    """One search step: the architect step on the validation batch (first order, or the unrolled
    second-order gradient with the finite-difference Hessian-vector product), then the weight step
    on the training batch (SGD lr 0.025, momentum 0.9, weight decay 3e-4, clip 5; alphas Adam 3e-4,
    betas (0.5, 0.999), weight decay 1e-3)."""
    def __init__(self, net, order, lr=0.025, momentum=0.9, wd=3e-4):
        self.net, self.order, self.lr, self.momentum, self.wd = net, order, lr, momentum, wd
        self.w_opt = torch.optim.SGD(net.weights(), lr, momentum=momentum, weight_decay=wd)
        self.a_opt = torch.optim.Adam(net.arch_parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)

    def __call__(self, xt, yt, xv, yv):
        net = self.net
        self.a_opt.zero_grad()
        if self.order == 1:
            F.cross_entropy(net(xv), yv).backward()
        else:
            self._unrolled(xt, yt, xv, yv)
        self.a_opt.step()
        self.w_opt.zero_grad()
        F.cross_entropy(net(xt), yt).backward()
        nn.utils.clip_grad_norm_(net.weights(), 5.)
        self.w_opt.step()

    def _unrolled(self, xt, yt, xv, yv):
        net, ws, arch = self.net, self.net.weights(), self.net.arch_parameters()
        theta = [w.detach().clone() for w in ws]
        grads = torch.autograd.grad(F.cross_entropy(net(xt), yt), ws)
        with torch.no_grad():  # w' = w - lr (momentum * buffer + dL/dw + wd w)
            for w, g in zip(ws, grads):
                buf = self.w_opt.state.get(w, {}).get('momentum_buffer')
                step = g + self.wd * w + (self.momentum * buf if buf is not None else 0)
                w.sub_(self.lr * step)
        loss = F.cross_entropy(net(xv), yv)
        g_all = torch.autograd.grad(loss, arch + ws)
        dalpha, v = g_all[:len(arch)], g_all[len(arch):]
        eps = 0.01 / torch.cat([t.reshape(-1) for t in v]).norm()
        with torch.no_grad():
            for w, t in zip(ws, theta):
                w.copy_(t)
            for w, d in zip(ws, v):
                w.add_(eps * d)
        g_plus = torch.autograd.grad(F.cross_entropy(net(xt), yt), arch)
        with torch.no_grad():
            for w, d in zip(ws, v):
                w.sub_(2 * eps * d)
        g_minus = torch.autograd.grad(F.cross_entropy(net(xt), yt), arch)
        with torch.no_grad():
            for w, t in zip(ws, theta):
                w.copy_(t)
        for a, da, gp, gm in zip(arch, dalpha, g_plus, g_minus):
            a.grad = da - self.lr * (gp - gm) / (2 * eps)


# MARK: - Measurement

def conv_macs(net, x):
    """Forward multiply-accumulates of convolutions and linear layers per image (hooks on a
    forward pass of two images, each counted per image)."""
    total = [0]

    def conv(m, i, o):
        total[0] += o.numel() // o.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, i, o):
        total[0] += m.in_features * m.out_features
    hooks = [m.register_forward_hook(conv) for m in net.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear) for m in net.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        net(x[:2])
    for h in hooks:
        h.remove()
    return total[0]


def op_kind(m):
    if isinstance(m, nn.Conv2d):
        if m.groups > 1:
            return 'depthwise conv'
        return '1x1 conv' if m.kernel_size == (1, 1) else 'dense conv (stem, aux)'
    for cls, name in ((nn.BatchNorm2d, 'BatchNorm'), (nn.ReLU, 'ReLU'), (nn.MaxPool2d, 'max pool'),
                      (nn.AvgPool2d, 'avg pool'), (nn.Linear, 'linear')):
        if isinstance(m, cls):
            return name
    return None


def roofline(net, x, passes):
    """FLOPs and minimum bytes per op kind for one step of `passes` forward+backward passes.

    FLOPs: convolutions and linear layers 2 x MACs forward, twice that backward (input and weight
    gradients); BatchNorm about 8 per element forward and backward, ReLU and pools 1 per element
    (or per window element) each way. Minimum bytes, with every op run as its own pass (no fusion)
    in fp32: forward reads the input and writes the output once; backward reads the upstream
    gradient and the saved input and writes the input gradient (pools and BN also read the output);
    weights are read in both passes. The optimiser is one row (20 bytes per parameter: read w, g,
    m; write w, m). Not counted: the sums of a node's inputs, concatenation, drop path, the mixed
    edges' weighted sums and slicing (no module to hook; each moves about as much as a ReLU).
    Second-order steps count all 5 passes as full ones (the two Hessian passes need no weight
    gradients, so they are an upper bound there).
    """
    stats = {}

    def hook(m, i, o):
        kind = op_kind(m)
        xin, n_in, n_out = i[0], i[0].numel(), o.numel()
        fwd_bytes = 4 * (n_in + n_out)
        bwd_bytes = 4 * (2 * n_in + n_out) + (4 * n_out if kind in ('BatchNorm', 'max pool') else 0)
        params = sum(p.numel() for p in m.parameters(recurse=False))
        if kind in ('depthwise conv', '1x1 conv', 'dense conv (stem, aux)'):
            macs = o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            flops = 3 * 2 * macs
        elif kind == 'linear':
            flops = 3 * 2 * m.in_features * m.out_features * xin.shape[0]
        elif kind == 'BatchNorm':
            flops = 16 * n_out
        elif kind in ('max pool', 'avg pool'):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            flops = 2 * n_out * k * k
        else:
            flops = 2 * n_out
        s = stats.setdefault(kind, [0, 0, 0])
        s[0] += flops
        s[1] += fwd_bytes + bwd_bytes + 2 * 4 * params
        s[2] += 1
    hooks = [m.register_forward_hook(hook) for m in net.modules() if op_kind(m)]
    net.train()
    out = net(x)
    for h in hooks:
        h.remove()
    rows = {k: (v[0] * passes, v[1] * passes, v[2]) for k, v in stats.items()}
    n_params = sum(p.numel() for p in net.parameters())
    rows['optimiser (SGD momentum)'] = (3 * n_params, 20 * n_params, 1)
    return rows


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def cpu_ticks():
    """The machine's CPU ticks from /proc/stat's "cpu" line: (all, steal), or None."""
    try:
        with open('/proc/stat') as f:
            line = next(l for l in f if l.startswith('cpu '))
    except (OSError, StopIteration):
        return None
    v = [int(t) for t in line.split()[1:9]]
    return (sum(v), v[7]) if len(v) == 8 else None


def time_steps(step, steps, warmup):
    """Min, median and max of the timed steps, and the host's CPU steal over them (share, or None)."""
    for _ in range(warmup):
        step()
    times = []
    before = cpu_ticks()
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    after = cpu_ticks()
    steal = (after[1] - before[1]) / (after[0] - before[0]) if before and after and after[0] > before[0] else None
    return min(times), statistics.median(times), max(times), steal


def parse_input(s):
    parts = [int(p) for p in s.lower().split('x')]
    if len(parts) != 3:
        raise SystemExit('--input expects CxHxW, got ' + s)
    return parts


def build(args):
    """The network, a step closure and what a step counts (passes, images) for the arguments."""
    shape = parse_input(args.input)
    torch.manual_seed(1)
    x = torch.randn(args.batch, *shape)
    y = torch.randint(0, args.classes, (args.batch,))
    if args.command == 'train' or args.kind == 'train':
        net = NetworkCIFAR(args.channels, args.classes, args.layers, args.auxiliary, load_genotype(args.genotype), shape[0])
        net.drop_path_prob = args.drop_path
        net.train()
        opt = torch.optim.SGD(net.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
        return net, (lambda: train_step(net, opt, x, y)), 1, args.batch, x
    net = SearchNetwork(args.channels, args.classes, args.layers, shape[0], partial=args.method == 'pc-darts')
    net.train()
    xv = torch.randn(args.batch, *shape)
    yv = torch.randint(0, args.classes, (args.batch,))
    step = SearchStep(net, args.order)
    return net, (lambda: step(x, y, xv, yv)), (2 if args.order == 1 else 5), 2 * args.batch, x


def describe(args):
    if args.command == 'train':
        return ('%s, C=%d, %d layers, input %s, batch %d, drop path %g, auxiliary %s'
                % (args.genotype, args.channels, args.layers, args.input, args.batch, args.drop_path, 'on' if args.auxiliary else 'off'))
    return ('%s%s, C=%d, %d layers, input %s, batch %d, order %d'
            % (args.method, ' K=4' if args.method == 'pc-darts' else '', args.channels, args.layers, args.input, args.batch, args.order))


def bench(args):
    torch.set_num_threads(args.threads)
    net, step, passes, images, x = build(args)
    macs = conv_macs(net.eval() if args.command == 'train' else net, x)
    aux_macs = 0
    if args.command == 'train' and args.auxiliary:
        net.train()
        net.drop_path_prob, dp = 0., net.drop_path_prob
        full = conv_macs(net, x)
        net.drop_path_prob = dp
        aux_macs = full - macs
    net.train()
    flops = passes * 3 * 2 * (macs + aux_macs) * args.batch
    lo, med, hi, steal = time_steps(step, args.steps, args.warmup)
    print('pytorch bench %s: %s, torch %s x %d thread(s)' % (args.command, describe(args), torch.__version__, args.threads))
    print('forward MACs per image: %d%s; analytic work per step: %.2f GFLOP' % (
        macs, ' + %d auxiliary head' % aux_macs if aux_macs else '', flops / 1e9))
    print('step time: min=%.3f median=%.3f max=%.3f s over %d steps (after %d warm-up)' % (lo, med, hi, args.steps, args.warmup))
    print('achieved: %.2f GFLOP/s, %.1f images/s' % (flops / med / 1e9, images / med))
    print('peak resident memory: %.0f MB' % peak_rss_mb())
    print('host CPU steal during the timed steps: ' + ("%.1f%% of the machine's CPU time" % (100 * steal) if steal is not None
                                                        else 'unknown (no /proc/stat)'))


def print_roofline(args):
    net, _, passes, _, x = build(args)
    rows = roofline(net, x, passes)
    print('roofline %s %s (per step, %d forward+backward pass(es), batch %d)' % (args.command, describe(args), passes, args.batch))
    print('%-26s %8s %10s %10s %8s' % ('op kind', 'calls', 'GFLOP', 'GB (min)', 'FLOP/B'))
    tf = tb = 0
    for kind, (f, b, n) in sorted(rows.items(), key=lambda r: -r[1][0]):
        tf += f
        tb += b
        print('%-26s %8d %10.3f %10.3f %8.2f' % (kind, n, f / 1e9, b / 1e9, f / b))
    print('%-26s %8s %10.3f %10.3f %8.2f' % ('total', '', tf / 1e9, tb / 1e9, tf / tb))


# MARK: - safetensors (a reader, so the check needs no package beyond torch)

DTYPES = {'F32': torch.float32, 'F64': torch.float64, 'I64': torch.int64, 'I32': torch.int32, 'F16': torch.float16,
          'BF16': torch.bfloat16, 'U8': torch.uint8}


def read_safetensors(path):
    with open(path, 'rb') as f:
        data = f.read()
    n = struct.unpack('<Q', data[:8])[0]
    header = json.loads(data[8:8 + n])
    body = memoryview(data)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        a, b = info['data_offsets']
        t = torch.frombuffer(bytearray(body[a:b]), dtype=DTYPES[info['dtype']]) if b > a else torch.empty(0, dtype=DTYPES[info['dtype']])
        out[name] = t.reshape(info['shape'])
    return out


def check_load(args):
    sd = read_safetensors(args.file)
    shape = parse_input(args.input)
    if args.kind == 'train':
        net = NetworkCIFAR(args.channels, args.classes, args.layers, args.auxiliary, load_genotype(args.genotype), shape[0])
    else:
        net = SearchNetwork(args.channels, args.classes, args.layers, shape[0], partial=args.kind == 'pc-search')
    mine = net.state_dict()
    missing = [k for k in mine if k not in sd]
    unexpected = [k for k in sd if k not in mine]
    for k in missing[:10]:
        print('missing:', k, tuple(mine[k].shape))
    for k in unexpected[:10]:
        print('unexpected:', k, tuple(sd[k].shape))
    net.load_state_dict(sd, strict=True)
    print('strict load OK: %d tensors from %s into %s' % (len(sd), args.file, type(net).__name__))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='command', required=True)
    for name in ('train', 'search', 'roofline', 'load'):
        s = sub.add_parser(name)
        if name == 'load':
            s.add_argument('file')
            s.add_argument('kind', choices=['train', 'search', 'pc-search'])
        if name == 'roofline':
            s.add_argument('kind', choices=['train', 'search'])
        s.add_argument('--genotype', default='DARTS_V2')
        s.add_argument('--method', default='darts', choices=['darts', 'pc-darts'])
        s.add_argument('--order', type=int, default=1, choices=[1, 2])
        s.add_argument('--channels', type=int, default=16)
        s.add_argument('--layers', type=int, default=8)
        s.add_argument('--input', default='3x32x32')
        s.add_argument('--classes', type=int, default=10)
        s.add_argument('--batch', type=int, default=64)
        s.add_argument('--auxiliary', action='store_true')
        s.add_argument('--drop-path', type=float, default=0.2)
        s.add_argument('--steps', type=int, default=5)
        s.add_argument('--warmup', type=int, default=1)
        s.add_argument('--threads', type=int, default=2)
    args = p.parse_args()
    if args.command == 'load':
        check_load(args)
    elif args.command == 'roofline':
        args.command = args.kind
        print_roofline(args)
    else:
        args.kind = args.command
        bench(args)


if __name__ == '__main__':
    main()
