#!/usr/bin/env python3
"""The tree against its design: every #include points down the layering drawn in docs/layout.md,
that page's tree names exactly the source files there are, and README.md's Layout names exactly
the layers, lowest last, and the engine's stages.

The layers, and what each may include besides its own folder and include/immerge.h (what they
include in turn comes with them). Nothing outside engine/ includes an engine/ header: immerge.h
is the engine's one public face. Each engine stage has one header, named after its folder, and
its files include that one (it includes the stage below). tests/ may include anything: unit tests
reach into a stage.
"""
import os
import re
import sys

BELOW = {
    'engine/base': [],
    'engine/request': ['engine/base'],
    'engine/io': ['engine/request'],
    'engine/source': ['engine/io'],
    'engine/plan': ['engine/source'],
    'engine/convert': ['engine/plan'],
    'engine/sink': ['engine/convert'],
    'engine/report': ['engine/convert'],
    'engine/task': ['engine/sink', 'engine/report'],
    'net': [],
    'oss': ['net'],
    'notify': ['net'],
    'tasks': ['notify'],
    'serve': ['tasks', 'net'],
    'cli': ['serve', 'oss'],
}
CODE = ['include', 'engine', 'net', 'oss', 'notify', 'tasks', 'serve', 'cli', 'tests/unit',
        'tests/fuzz', 'tests/valgrind']
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def closure(layer, seen=None):
    seen = set() if seen is None else seen
    for below in BELOW[layer]:
        if below not in seen:
            seen.add(below)
            closure(below, seen)
    return seen


def sources(root):
    found = []
    for top in CODE:
        for folder, _, files in os.walk(os.path.join(root, top)):
            found += [os.path.relpath(os.path.join(folder, f), root)
                      for f in files if f.endswith(('.c', '.h'))]
    return sorted(found)


def check_includes(root, files):
    wrong = []
    for path in files:
        layer = os.path.dirname(path)
        if layer not in BELOW:
            continue
        allowed = closure(layer) | {layer}
        stage = layer + '/' + os.path.basename(layer) + '.h'
        if layer.startswith('engine/') and path.endswith('.h') and path != stage:
            wrong.append('%s: a stage has one header, %s' % (path, stage))
        text = open(os.path.join(root, path), encoding='utf-8').read()
        for header in INCLUDE.findall(text):
            if header == 'immerge.h':
                continue
            if layer.startswith('engine/') and path.endswith('.c') and header != stage:
                wrong.append('%s includes "%s": a stage\'s files include %s alone' % (
                    path, header, stage))
                continue
            folder = os.path.dirname(header)
            if folder not in allowed:
                wrong.append('%s includes "%s": %s is not below %s' % (path, header,
                                                                        folder or '(no folder)',
                                                                        layer))
            elif not os.path.exists(os.path.join(root, header)):
                wrong.append('%s includes "%s", which does not exist' % (path, header))
    return wrong


def listed(root):
    """The files docs/layout.md's tree names under the code folders: an indented name ending in
    '/' opens a folder (two spaces a level), any other first word is a file in the open one."""
    text = open(os.path.join(root, 'docs', 'layout.md'), encoding='utf-8').read()
    tree = text.split('## The tree', 1)[1].split('```')[1]
    stack, names = [], set()
    for line in tree.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(' '))) // 2
        word = line.split()[0]
        del stack[depth:]
        if word.endswith('/'):
            stack.append(word.rstrip('/'))
        else:
            name = '/'.join(stack + [word])
            if name.endswith(('.c', '.h')) and any(name.startswith(top + '/') for top in CODE):
                names.add(name)
    return names


def readme_layers(root):
    """README.md's Layout block: (the folders it lists, top first; the stages on engine/'s line)."""
    text = open(os.path.join(root, 'README.md'), encoding='utf-8').read()
    block = text.split('## Layout', 1)[1].split('```')[1]
    folders, stages = [], []
    for line in block.splitlines():
        if line.strip():
            folders.append(line.split()[0].rstrip('/'))
            if folders[-1] == 'engine':
                stages = line.split('stage:', 1)[1].split()
    return folders, stages


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else '.'
    files = sources(root)
    problems = check_includes(root, files)
    names = listed(root)
    problems += ['docs/layout.md does not list %s' % f for f in files if f not in names]
    problems += ['docs/layout.md lists %s, which is not in the tree' % n
                 for n in sorted(names - set(files))]
    folders, stages = readme_layers(root)
    layers = ['cli', 'serve', 'tasks', 'notify', 'oss', 'net', 'engine', 'include']
    if folders != layers:
        problems.append('README.md\'s Layout lists %s; the layers, top first, are %s' % (
            ' '.join(folders), ' '.join(layers)))
    present = sorted(d for d in os.listdir(os.path.join(root, 'engine'))
                     if os.path.isdir(os.path.join(root, 'engine', d)))
    if sorted(stages) != present or sorted(BELOW) != sorted(
            ['engine/' + d for d in present] + [l for l in layers if l not in ('engine', 'include')]):
        problems.append('README.md\'s Layout names the stages %s; engine/ holds %s, and BELOW '
                        'here must name each layer' % (' '.join(stages), ' '.join(present)))
    for p in problems:
        print('layout: ' + p)
    if problems:
        return 1
    includes = sum(len(INCLUDE.findall(open(os.path.join(root, f), encoding='utf-8').read()))
                   for f in files)
    print('layout: %d files, %d includes, every one down the layering; docs/layout.md lists '
          'exactly these files, README.md the layers and stages' % (len(files), includes))
    return 0


if __name__ == '__main__':
    sys.exit(main())
