"""Local features with spatial verification on indoor-dev: SIFT (1500 keypoints at
640x360), Lowe's ratio test 0.8, RANSAC fundamental matrix; gallery photos ranked by inliers.

  .cache/venv/bin/pip install opencv-python-headless==5.0.0.93
  .cache/venv/bin/python scripts/eval/experiments/sift_ransac.py     # ~5 min on 2 cores

Measured: hotel@1 0.034, room@1 0.011 (worse than chance): the query walks share almost no
geometry with the gallery walks of the same floor.
"""
import csv, os, sys

import cv2
import numpy as np
from multiprocessing import Pool
D = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '..', 'shared', 'data', 'indoor-dev') + '/'
g=list(csv.DictReader(open(D+'gallery.csv'))); q=list(csv.DictReader(open(D+'queries.csv')))
sift=cv2.SIFT_create(nfeatures=1500)
def feat(p):
    im=cv2.imread(D+p,cv2.IMREAD_GRAYSCALE); im=cv2.resize(im,(640,360),interpolation=cv2.INTER_AREA)
    k,d=sift.detectAndCompute(im,None)
    return np.float32([x.pt for x in k]), d
def match(a,b):
    (ka,da),(kb,db)=a,b
    if da is None or db is None or len(da)<8 or len(db)<8: return 0
    m=cv2.BFMatcher(cv2.NORM_L2).knnMatch(da,db,k=2)
    good=[x[0] for x in m if len(x)==2 and x[0].distance<0.8*x[1].distance]
    if len(good)<8: return len(good)//4
    pa=ka[[x.queryIdx for x in good]]; pb=kb[[x.trainIdx for x in good]]
    F,mask=cv2.findFundamentalMat(pa,pb,cv2.FM_RANSAC,3.0,0.99)
    return int(mask.sum()) if mask is not None else 0
GF=None
def init():
    global GF; GF=[feat(r['path']) for r in g]
def work(i):
    f=feat(q[i]['path']); return [match(f,x) for x in GF]
if __name__=='__main__':
    with Pool(2,initializer=init) as p: S=np.array(p.map(work,range(len(q))))
    gh=np.array([r['hotel'] for r in g]); qh=np.array([r['hotel'] for r in q]); gr=np.array([r['room'] for r in g]); qr=np.array([r['room'] for r in q])
    o=np.argsort(-S,1); print('sift hotel@1',np.mean(gh[o[:,0]]==qh),'room@1',np.mean(gr[o[:,0]]==qr))
