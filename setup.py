"""Install mmplug_agg.

Like mmdet, the installed package carries a ``.mim`` folder holding ``configs/`` and
``tools/`` so that ``mim train mmplug_agg CONFIG`` finds our tools and configs. An
editable install links the folders (edits show at once); a regular build copies them.
"""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
MIM_FILES = ('configs', 'tools', 'requirements', 'model-index.yml')


def read_version() -> str:
    namespace: dict = {}
    with open(osp.join(HERE, 'mmplug_agg', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_requirements(name: str) -> list:
    with open(osp.join(HERE, 'requirements', name)) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def link_mim_folder() -> None:
    """Point ``mmplug_agg/.mim/<x>`` at the top-level folders (source tree, editable)."""
    mim_dir = osp.join(HERE, 'mmplug_agg', '.mim')
    os.makedirs(mim_dir, exist_ok=True)
    for name in MIM_FILES:
        src = osp.join(HERE, name)
        dst = osp.join(mim_dir, name)
        if not osp.exists(src) or osp.lexists(dst):
            continue
        os.symlink(osp.relpath(src, mim_dir), dst)


class BuildPyWithMim(build_py):
    """Copy real files (not links) into the built package's ``.mim`` folder."""

    def run(self):
        super().run()
        mim_dir = osp.join(self.build_lib, 'mmplug_agg', '.mim')
        for name in MIM_FILES:
            src = osp.join(HERE, name)
            dst = osp.join(mim_dir, name)
            if not osp.exists(src):
                continue
            if osp.lexists(dst):
                if osp.isdir(dst) and not osp.islink(dst):
                    shutil.rmtree(dst)
                else:
                    os.remove(dst)
            if osp.isdir(src):
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                os.makedirs(mim_dir, exist_ok=True)
                shutil.copyfile(src, dst)


link_mim_folder()

setup(
    name='mmplug_agg',
    version=read_version(),
    description='Feature-aggregation architectures (DLA, HRNetV2, AugFPN, RFP, BiFPN, '
    'Shape Adaptor, DeepLab) for mmdet 3.x and mmseg 1.x',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    keywords='computer vision, object detection, semantic segmentation, openmmlab',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs', 'benchmarks')),
    include_package_data=True,
    python_requires='>=3.8',
    license='Apache License 2.0',
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'tests': read_requirements('tests.txt'),
        'mim': read_requirements('mminstall.txt'),
    },
    cmdclass={'build_py': BuildPyWithMim},
    zip_safe=False,
)
