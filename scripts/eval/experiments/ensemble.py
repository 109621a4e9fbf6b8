"""Late fusion of MobileNetV2 and EfficientNet-Lite2 (GAP, aspect-preserving) on indoor-dev.

  .cache/venv/bin/python scripts/eval/experiments/ensemble.py

Measured: fusion never beats MobileNetV2 alone (README, "What was tried").
"""
import os
import csv, numpy as np, onnxruntime as ort
from PIL import Image
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..')
D = os.path.join(ROOT, '..', 'shared', 'data', 'indoor-dev') + '/'
def feats(model, mean, std, short):
    s=ort.InferenceSession(os.path.join(ROOT, 'models', f'{model}.onnx'), providers=['CPUExecutionProvider'])
    out={}
    for f in ['gallery','queries']:
        rows=list(csv.DictReader(open(D+f+'.csv'))); v=[]
        for r in rows:
            im=Image.open(D+r['path']).convert('RGB'); w,h=im.size; sc=short/min(w,h)
            W=max(32,round(w*sc/32)*32); H=max(32,round(h*sc/32)*32)
            x=((np.asarray(im.resize((W,H),Image.BILINEAR),np.float32)-mean)/std).transpose(2,0,1)[None]
            v.append(s.run(['feature_map'],{'input':x})[0][0].mean((1,2)))
        out[f]=np.stack(v)
    return out
m=feats('mobilenetv2',np.array([123.675,116.28,103.53],np.float32),np.array([58.395,57.12,57.375],np.float32),224)
e=feats('efficientnet-lite2',np.float32(127),np.float32(128),260)
g=list(csv.DictReader(open(D+'gallery.csv'))); q=list(csv.DictReader(open(D+'queries.csv')))
gh=np.array([r['hotel'] for r in g]); qh=np.array([r['hotel'] for r in q]); gr=np.array([r['room'] for r in g]); qr=np.array([r['room'] for r in q])
l2=lambda x: x/np.linalg.norm(x,axis=-1,keepdims=True)
def rep(n,S): o=np.argsort(-S,1); print(f'{n:30s} hotel@1 {np.mean(gh[o[:,0]]==qh):.3f} room@1 {np.mean(gr[o[:,0]]==qr):.3f}')
Sm=l2(m['queries'])@l2(m['gallery']).T; Se=l2(e['queries'])@l2(e['gallery']).T
rep('mobilenetv2',Sm); rep('lite2',Se)
for w in [0.25,0.5,0.75]: rep(f'sum sims w_e={w}',(1-w)*Sm+w*Se)
