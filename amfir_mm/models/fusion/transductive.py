"""Transductive cross-modal prototype refinement (an extension beyond the
AMFIR paper; opt-in).

The paper's meta-test is inductive: each query is labelled from the support
set alone.  Here an episode's unlabelled queries refine each modality's
class prototypes by a few soft k-means steps, the queries being
soft-assigned to classes by the *other* modality's confident posteriors
(``source='other'``), so a modality whose query embeddings are shifted
from its supports borrows the other modality's clustering.  The
transductive single-modality baseline is the same soft k-means with each
modality assigned by its own posteriors (``source='self'``), on the same
episodes.  Cross-modal agreement of the final posteriors gives a
label-free per-episode reliability of each modality.

Everything works on per-video embeddings (the frame means a
:class:`PrototypeHead` reads in the cached meta-test) and is batched over
``E`` episodes of one shape.
"""
from typing import Dict, Union

import torch
import torch.nn.functional as F
from mmaction.registry import MODELS
from mmengine.model import BaseModule

Temperature = Union[float, torch.Tensor]
PerModality = Dict[str, torch.Tensor]

TRANSDUCTIVE_SOURCES = ('other', 'self')
TRANSDUCTIVE_METRICS = ('cosine', 'euclidean')
CONFIDENCE_MODES = ('max', 'relative')


def refine_prototypes(support: torch.Tensor,
                      query: torch.Tensor,
                      assignment: torch.Tensor,
                      num_ways: int,
                      num_shots: int,
                      query_weight: float = 1.0) -> torch.Tensor:
    """Class prototypes from the supports and softly assigned queries.

    ``prototype_c = (sum_k s_ck + w * sum_q a_qc q) / (K + w * sum_q a_qc)``
    with ``w = query_weight``: a zero assignment (or ``w = 0``) gives the
    support means.  The embeddings are used as given (a caller that wants
    cosine prototypes L2-normalises them first).

    Args:
        support: ``(E, N * K, C)`` support embeddings, class-major.
        query: ``(E, M, C)`` query embeddings.
        assignment: ``(E, M, N)`` soft class weights of each query, in
            ``[0, 1]`` (rows need not sum to one: a low-confidence query
            may count less).
        num_ways: N. num_shots: K.
        query_weight: weight ``w >= 0`` of a fully assigned query relative
            to one support.

    Returns:
        ``(E, N, C)`` prototypes.
    """
    if support.shape[-2] != num_ways * num_shots:
        raise ValueError(f'{support.shape[-2]} supports per episode, '
                         f'expected {num_ways} x {num_shots}')
    if assignment.shape[-2:] != (query.shape[-2], num_ways):
        raise ValueError(f'assignment of shape {tuple(assignment.shape)} '
                         f'does not match {query.shape[-2]} queries and '
                         f'{num_ways} classes')
    if query_weight < 0:
        raise ValueError(f'query_weight must be >= 0, got {query_weight}')
    support_sum = support.unflatten(-2, (num_ways, num_shots)).sum(-2)
    query_sum = assignment.transpose(-1, -2) @ query  # (E, N, C)
    mass = assignment.sum(-2).unsqueeze(-1)  # (E, N, 1)
    return (support_sum + query_weight * query_sum) / (
        num_shots + query_weight * mass)


def prototype_distances(query: torch.Tensor, prototypes: torch.Tensor,
                        metric: str) -> torch.Tensor:
    """Query-to-prototype distances as :class:`PrototypeHead` measures them.

    Args:
        query: ``(E, M, C)``.
        prototypes: ``(E, N, C)``.
        metric: ``'cosine'`` (``1 - cos``) or ``'euclidean'`` (squared
            Euclidean distance divided by ``C``).

    Returns:
        ``(E, M, N)`` distances.
    """
    if metric == 'cosine':
        return 1 - F.normalize(
            query, dim=-1) @ F.normalize(
                prototypes, dim=-1).transpose(-1, -2)
    if metric == 'euclidean':
        diff = query.unsqueeze(-2) - prototypes.unsqueeze(-3)
        return diff.pow(2).sum(-1) / query.shape[-1]
    raise ValueError(f'metric must be one of {TRANSDUCTIVE_METRICS}, got '
                     f'{metric!r}')


def cross_modal_reliability(probs: torch.Tensor,
                            temperature: float = 0.1) -> torch.Tensor:
    """Label-free per-episode reliability of each modality from cross-modal
    agreement.

    ``agree_a = mean_q mean_{b != a} p_a(argmax_c p_b(c|q) | q)``: how
    probable modality ``a`` finds, on average over the episode's queries,
    the top class of the other modality (of each other modality, averaged,
    when ``S > 2``).  ``r = softmax_a(agree_a / temperature)``.  A single
    modality gets ``r = 1``.  Where the modalities disagree, the flatter
    posterior puts more mass on the other's top class and so scores higher;
    where they agree, the sharper one does.

    Args:
        probs: ``(E, S, M, N)`` posteriors of ``S`` modalities.
        temperature: ``T > 0`` of the softmax over modalities (agreements
            lie in ``[0, 1]``; smaller ``T`` is sharper).

    Returns:
        ``(E, S)`` reliabilities, summing to one per episode.
    """
    if temperature <= 0:
        raise ValueError(f'temperature must be > 0, got {temperature}')
    num_episodes, num_modalities = probs.shape[:2]
    if num_modalities == 1:
        return probs.new_ones(num_episodes, 1)
    top = probs.argmax(-1)  # (E, S, M)
    # p_of_top[e, a, b, q] = p_a(top_b(q) | q): (E, S_a, S_b, M)
    pairs = (num_episodes, num_modalities, num_modalities, probs.shape[2])
    p_of_top = probs.unsqueeze(2).expand(*pairs, -1).gather(
        -1,
        top.unsqueeze(1).expand(pairs).unsqueeze(-1)).squeeze(-1)
    off_diagonal = 1 - torch.eye(
        num_modalities, dtype=probs.dtype, device=probs.device)
    agreement = (p_of_top.mean(-1) * off_diagonal).sum(-1) / (
        num_modalities - 1)
    return torch.softmax(agreement / temperature, dim=-1)


@MODELS.register_module()
class CrossModalSoftKMeans(BaseModule):
    """Transductive prototype refinement, across modalities or within one.

    An extension beyond the AMFIR paper, opt-in.  Per modality ``m`` and
    episode: initial prototypes are the support means; each of ``steps``
    steps computes every modality's posterior
    ``p_m(c|q) = softmax_c(-d(q, prototype_mc) / tau_m)`` and then
    re-estimates every modality's prototypes at once with
    :func:`refine_prototypes`, the queries assigned to classes by

    * ``source='other'``: the other modality's posterior (the mean of the
      other modalities' posteriors when ``S > 2``; needs ``S >= 2``);
    * ``source='self'``: the modality's own posterior (the transductive
      single-modality baseline; works with one modality),

    each query's assignment scaled by its confidence (below).  The returned
    log-posteriors are those of the final prototypes (``steps=0``: the
    plain prototype posteriors), and the reliability is
    :func:`cross_modal_reliability` of the final posteriors.

    With ``metric='cosine'`` support and query embeddings are L2-normalised
    first, so a prototype is the (weighted) mean of unit vectors; this
    equals :class:`PrototypeHead` at ``steps=0`` for ``K = 1`` or
    unit-norm embeddings (the head averages raw embeddings before
    normalising).  ``'euclidean'`` uses the embeddings as given.
    Gradients flow through every step (nothing is detached); there are no
    parameters.

    Args:
        steps (int): soft k-means steps (``>= 0``).
        source (str): ``'other'`` or ``'self'``, whose posterior assigns a
            modality's queries.
        confidence (str | float | None): how an assigning posterior ``p``
            becomes modality ``m``'s assignment ``a_qc``: ``'max'`` scales
            it by the query's top probability, ``a_qc = p_qc * max_c' p_qc'``
            (an unsure query counts less); ``'relative'`` (default) does
            the same but zeroes a query where ``p`` is less confident than
            ``m``'s own posterior (``max p_q < max p_m,q``), so a modality
            only learns from a more confident one (as AMD distils from the
            more reliable modality to the less reliable one); with
            ``source='self'`` it equals ``'max'``.  A float threshold ``t``
            in ``[0, 1]`` keeps ``p_q`` where ``max_c p_qc >= t`` and zeroes
            the query otherwise; ``None`` uses ``p`` as it is.  Why
            ``'relative'``: with ``'max'``, ``None`` or a threshold below
            the wrong modality's confidence, two modalities that disagree
            confidently swap their labels at every step (each adopts the
            other's, the right one included), so the result oscillates
            with the step count.
        query_weight (float): weight of a fully assigned query relative to
            one support (see :func:`refine_prototypes`).
        metric (str): ``'cosine'`` (``d = 1 - cos``) or ``'euclidean'``
            (squared distance / ``C``), as :class:`PrototypeHead`.
        reliability_temperature (float): ``T`` of
            :func:`cross_modal_reliability`.
    """

    def __init__(self,
                 steps: int = 3,
                 source: str = 'other',
                 confidence: Union[str, float, None] = 'relative',
                 query_weight: float = 1.0,
                 metric: str = 'cosine',
                 reliability_temperature: float = 0.1,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if steps < 0:
            raise ValueError(f'steps must be >= 0, got {steps}')
        if source not in TRANSDUCTIVE_SOURCES:
            raise ValueError(f'source must be one of {TRANSDUCTIVE_SOURCES}, '
                             f'got {source!r}')
        if isinstance(confidence, str):
            if confidence not in CONFIDENCE_MODES:
                raise ValueError(f'confidence must be one of '
                                 f'{CONFIDENCE_MODES}, a threshold in '
                                 f'[0, 1] or None, got {confidence!r}')
        elif confidence is not None and not 0 <= confidence <= 1:
            raise ValueError(f'confidence threshold must lie in [0, 1], got '
                             f'{confidence}')
        if metric not in TRANSDUCTIVE_METRICS:
            raise ValueError(f'metric must be one of {TRANSDUCTIVE_METRICS}, '
                             f'got {metric!r}')
        if query_weight < 0:
            raise ValueError(f'query_weight must be >= 0, got {query_weight}')
        if reliability_temperature <= 0:
            raise ValueError(f'reliability_temperature must be > 0, got '
                             f'{reliability_temperature}')
        self.steps = steps
        self.source = source
        self.confidence = confidence
        self.query_weight = query_weight
        self.metric = metric
        self.reliability_temperature = reliability_temperature

    def weigh_by_confidence(self, probs: torch.Tensor,
                            own_probs: torch.Tensor) -> torch.Tensor:
        """Assigning posterior -> assignment (see ``confidence``).

        Args:
            probs: ``(E, M, N)`` the assigning posterior.
            own_probs: ``(E, M, N)`` the assigned modality's own posterior
                (read by ``'relative'`` only).

        Returns:
            ``(E, M, N)`` assignment in ``[0, 1]``.
        """
        if self.confidence is None:
            return probs
        top = probs.max(-1, keepdim=True).values
        if self.confidence == 'max':
            return probs * top
        if self.confidence == 'relative':
            own_top = own_probs.max(-1, keepdim=True).values
            return probs * top * (top >= own_top).to(probs.dtype)
        return probs * (top >= self.confidence).to(probs.dtype)

    def log_posteriors(self, query: torch.Tensor, prototypes: torch.Tensor,
                       temperature: Temperature) -> torch.Tensor:
        """``(E, M, N)`` log-posteriors ``log_softmax(-d / tau)``."""
        tau = torch.as_tensor(
            temperature, dtype=query.dtype, device=query.device)
        return F.log_softmax(
            -prototype_distances(query, prototypes, self.metric) / tau, dim=-1)

    def forward(self, support: PerModality, query: PerModality,
                temperature: Dict[str, Temperature], num_ways: int,
                num_shots: int) -> dict:
        """Refine every modality's prototypes with the episodes' queries.

        Args:
            support: per modality ``m``, ``(E, N * K, C_m)`` support
                embeddings, class-major.
            query: per modality, ``(E, M, C_m)`` query embeddings (the
                same ``M`` queries in every modality).
            temperature: per modality, ``tau_m`` (float or 0-d tensor) of
                the posterior ``softmax(-d / tau_m)``.
            num_ways: N. num_shots: K.

        Returns:
            dict with ``log_probs``: per modality ``(E, M, N)``
            log-posteriors of the final prototypes; ``prototypes``: per
            modality ``(E, N, C_m)`` final prototypes (unit-normalised
            inputs' weighted means for cosine); ``reliability``:
            ``(E, S)`` per-episode modality reliabilities in the dicts'
            order (summing to one; all ones for one modality).
        """
        modalities = list(support)
        if set(query) != set(
                modalities) or not set(modalities) <= set(temperature):
            raise ValueError('support, query and temperature need the same '
                             'modalities')
        if not modalities:
            raise ValueError('no modality given')
        if self.source == 'other' and len(modalities) < 2:
            raise ValueError("source='other' needs at least two modalities; "
                             "use source='self' for one")
        if self.metric == 'cosine':
            support = {m: F.normalize(support[m], dim=-1) for m in modalities}
            query = {m: F.normalize(query[m], dim=-1) for m in modalities}
        prototypes = {
            m: support[m].unflatten(-2, (num_ways, num_shots)).mean(-2)
            for m in modalities
        }
        log_probs = {
            m: self.log_posteriors(query[m], prototypes[m], temperature[m])
            for m in modalities
        }
        for _ in range(self.steps):
            probs = {m: log_probs[m].exp() for m in modalities}
            for m in modalities:
                if self.source == 'self':
                    assigning = probs[m]
                else:
                    assigning = torch.stack(
                        [probs[b] for b in modalities if b != m]).mean(0)
                prototypes[m] = refine_prototypes(
                    support[m], query[m],
                    self.weigh_by_confidence(assigning, probs[m]), num_ways,
                    num_shots, self.query_weight)
            log_probs = {
                m: self.log_posteriors(query[m], prototypes[m], temperature[m])
                for m in modalities
            }
        reliability = cross_modal_reliability(
            torch.stack([log_probs[m].exp() for m in modalities], dim=1),
            self.reliability_temperature)
        return dict(
            log_probs=log_probs,
            prototypes=prototypes,
            reliability=reliability)
