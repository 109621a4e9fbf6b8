"""Hotel recognition from MobileNetV2 features beyond one global vector, on indoor-dev:
NBNN (image-to-hotel matching of feature-map cells, plain and "local" with a margin over the
runner-up) and LDA (whitening learned with the gallery's hotel labels).

  .cache/venv/bin/python scripts/eval/experiments/cells_lda.py target/experiments/fm224.npz

Measured (README, "What was tried"): none beats the default global GAP vector.
"""
import sys, numpy as np
d=np.load(sys.argv[1]); gf,qf=d['gf'],d['qf']; gh,gr,qh,qr=d['gh'],d['gr'],d['qh'],d['qr']
H=sorted(set(gh)); hid={h:i for i,h in enumerate(H)}
gy=np.array([hid[h] for h in gh]); qy=np.array([hid.get(h,-1) for h in qh])
def l2(x): return x/np.linalg.norm(x,axis=-1,keepdims=True).clip(1e-9)
def report(name, S):  # S: query x gallery image sims
    o=np.argsort(-S,1)
    h1=np.mean(gh[o[:,0]]==qh); r1=np.mean(gr[o[:,0]]==qr)
    # hotel@5 via best per hotel
    print(f'{name:40s} hotel@1 {h1:.3f} room@1 {r1:.3f}')
def report_h(name, HS):  # query x hotel scores
    o=np.argsort(-HS,1); h1=np.mean(o[:,0]==qy); h5=np.mean([qy[i] in o[i,:5] for i in range(len(qy))])
    print(f'{name:40s} hotel@1 {h1:.3f} hotel@5 {h5:.3f}')
gap_g=l2(gf.mean((2,3))); gap_q=l2(qf.mean((2,3)))
report('GAP', gap_q@gap_g.T)
p=3; gem=lambda f: l2((np.clip(f,1e-6,None)**p).mean((2,3))**(1/p))
report('GeM', gem(qf)@gem(gf).T)
# NBNN on cells
def cells(f): n,c,h,w=f.shape; return l2(f.reshape(n,c,h*w).transpose(0,2,1))
gc=cells(gf); qc=cells(qf)
G=gc.reshape(-1,gc.shape[-1]); Gimg=np.repeat(np.arange(len(gf)),gc.shape[1]); Gy=gy[Gimg]
nh=len(H)
for k in [1]:
  HS=np.zeros((len(qf),nh)); HS2=np.zeros((len(qf),nh))
  for i in range(len(qf)):
    S=qc[i]@G.T  # cells x gallerycells
    best=np.full((S.shape[0],nh),-1.0)
    for h in range(nh): best[:,h]=S[:,Gy==h].max(1)
    HS[i]=best.sum(0)
    # local NBNN: distance relative to background (k+1-th class)
    sb=np.sort(best,1); HS2[i]=(best - sb[:,[-2]]).clip(0).sum(0)  # margin over second best class
  report_h('NBNN cells', HS); report_h('local NBNN margin', HS2)
# baseline hotel from best image
S=gap_q@gap_g.T; HS=np.stack([S[:,gy==h].max(1) for h in range(nh)],1); report_h('GAP best-per-hotel',HS)
# LDA-ish supervised whitening on GAP
X=gap_g; mu=X.mean(0)
for reg in [1e-3,1e-2,1e-1]:
  Sw=np.zeros((X.shape[1],)*2)
  for h in range(nh):
    Z=X[gy==h]-X[gy==h].mean(0); Sw+=Z.T@Z
  Sw/=len(X); Sw+=reg*np.trace(Sw)/len(Sw)*np.eye(len(Sw))
  e,V=np.linalg.eigh(Sw); P=V/np.sqrt(e)
  Xg=(X-mu)@P; Mb=np.stack([Xg[gy==h].mean(0) for h in range(nh)]); 
  e2,V2=np.linalg.eigh(np.cov(Mb.T)); P2=V2[:,-(nh-1):]
  A=P@P2
  wg=l2((X-mu)@A); wq=l2((gap_q-mu)@A)
  report(f'LDA reg {reg}', wq@wg.T)
  S=wq@wg.T; report_h(f'LDA reg {reg} hotel', np.stack([S[:,gy==h].max(1) for h in range(nh)],1))
# A linear hotel classifier (softmax regression) trained on the gallery's GAP vectors.
def train(X, y, epochs, lr=0.5, wd=1e-4):
    W = np.zeros((X.shape[1], nh)); b = np.zeros(nh)
    for _ in range(epochs):
        Z = X @ W + b; Z -= Z.max(1, keepdims=True); P = np.exp(Z); P /= P.sum(1, keepdims=True)
        P[np.arange(len(y)), y] -= 1; P /= len(y); W -= lr * (X.T @ P + wd * W); b -= lr * P.sum(0)
    return W, b
for scale in [5, 10, 20]:
    for epochs in [100, 300, 1000]:
        W, b = train(gap_g * scale, gy, epochs)
        report_h(f'softmax regression x{scale}, {epochs} epochs', (gap_q * scale) @ W + b)
