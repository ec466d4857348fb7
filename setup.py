"""amfir-mm: an MMAction2 plug-in for few-shot action recognition from RGB
and optical flow (AMFIR).  Install with ``bash tools/install.sh``."""
import os.path as osp
from setuptools import find_packages, setup


def read_requirements(name):
    """Requirement lines of ``requirements/<name>.txt`` (comments dropped)."""
    path = osp.join(osp.dirname(__file__), 'requirements', name + '.txt')
    with open(path) as f:
        return [
            line.split('#')[0].strip() for line in f
            if line.split('#')[0].strip()
        ]


version = {}
with open(osp.join(osp.dirname(__file__), 'amfir_mm', 'version.py')) as f:
    exec(f.read(), version)

setup(
    name='amfir-mm',
    version=version['__version__'],
    description='AMFIR few-shot action recognition (RGB + optical flow) '
    'for MMAction2',
    long_description=open('README.md').read()
    if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['amfir_mm', 'amfir_mm.*']),
    python_requires='>=3.9',
    install_requires=read_requirements('runtime'),
    extras_require=dict(tests=read_requirements('tests')),
    license='Apache-2.0',
)
