"""benchmarks/amd_term_scale.py on a tiny embeddings file it writes."""
import json

import torch

from conftest import load_script


def test_term_scale_reports_both_terms(tmp_path):
    script = load_script('benchmarks/amd_term_scale.py', 'amd_term_scale')
    gen = torch.Generator().manual_seed(0)
    train = {
        m: torch.randn(2, 20, 8, 1280, generator=gen)
        for m in ('rgb', 'flow')
    }
    path = tmp_path / 'embeddings.pth'
    torch.save(dict(video_keys=[], views=2, train=train), path)
    results = []
    for run in range(2):
        out = tmp_path / f'scale{run}.json'
        script.main([
            '--embeddings',
            str(path), '--shots', '2', '--episodes', '2', '--out',
            str(out)
        ])
        results.append(json.loads(out.read_text()))
    result = results[0]
    # seeded: a rerun gives the same adapters, episodes and gradients
    for key in ('posterior_adapter_grad_norm', 'relation_adapter_grad_norm'):
        assert results[1][key] == result[key]
    assert result['relation_weight'] == 1.0 and result['episodes'] == 2
    # both terms are positive KL divergences between different modalities
    assert result['posterior_term'] > 0 and result['relation_term'] > 0
    # identity adapters at construction: the gradient reaches them anyway
    assert result['relation_adapter_grad_norm'] > 0
