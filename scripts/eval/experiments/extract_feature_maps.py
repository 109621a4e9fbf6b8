"""Feature maps of indoor-dev for the retrieval experiments (cells_lda.py).

  .cache/venv/bin/python scripts/eval/experiments/extract_feature_maps.py [SHORT_SIDE=224] [OUT_DIR=target/experiments]

Runs models/mobilenetv2.onnx (made by scripts/setup.sh) on ../shared/data/indoor-dev with
an aspect-preserving resize (short side SHORT_SIDE, sides multiples of 32), and saves every
feature map with the labels to OUT_DIR/fm{SHORT_SIDE}.npz.
"""
import csv, os, sys

import numpy as np
import onnxruntime as ort
from PIL import Image
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..')
D = os.path.join(ROOT, '..', 'shared', 'data', 'indoor-dev') + '/'
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, 'target', 'experiments')
os.makedirs(OUT, exist_ok=True)
short=int(sys.argv[1]) if len(sys.argv)>1 else 224
s=ort.InferenceSession(os.path.join(ROOT, 'models', 'mobilenetv2.onnx'), providers=['CPUExecutionProvider'])
mean=np.array([123.675,116.28,103.53],np.float32); std=np.array([58.395,57.12,57.375],np.float32)
def load(f):
    rows=list(csv.DictReader(open(D+f)))
    fms=[]
    for r in rows:
        im=Image.open(D+r['path']).convert('RGB'); w,h=im.size
        sc=short/min(w,h); W=max(32,round(w*sc/32)*32); H=max(32,round(h*sc/32)*32)
        im=im.resize((W,H),Image.BILINEAR)
        x=((np.asarray(im,np.float32)-mean)/std).transpose(2,0,1)[None]
        fm=s.run(['feature_map'],{'input':x})[0][0]
        fms.append(fm)
    return rows,np.stack(fms)
g,gf=load('gallery.csv'); q,qf=load('queries.csv')
np.savez(os.path.join(OUT, f'fm{short}.npz'),gf=gf,qf=qf,gh=[r['hotel'] for r in g],gr=[r['room'] for r in g],qh=[r['hotel'] for r in q],qr=[r['room'] for r in q])
print(gf.shape,qf.shape)
