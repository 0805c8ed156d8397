"""SynthAU: a deterministic, seeded procedural benchmark shaped like BP4D and DISFA.

Real AU datasets are licensed, so the default benchmark is generated. Each frame is a face drawn
from a 68-point iBUG landmark configuration:

* **identity** per subject: face shape, skin and hair tone, feature positions and sizes, line
  thickness, and a *neutral-face bias* (naturally raised brows, down-turned mouth corners, narrow
  eyes) that imitates AUs without being labelled as them, as real neutral faces do;
* **AUs** as local deformations of the landmarks in their FACS regions (brows for AU1/2/4,
  lids and cheeks for AU5/6/7, nose for AU9, lips and jaw for AU10-26) plus the texture cues that
  coders use (glabella furrows for AU4, crow's feet for AU6, nose wrinkles for AU9, dimples for AU14,
  chin boss for AU17), all scaled by an intensity 0-5;
* **videos** per subject and task built from expression events with onset-apex-offset envelopes,
  so neighbouring frames are correlated; events are drawn from prototypes (smile = AU6+AU12,
  surprise = AU1+AU2+AU5+AU25+AU26, ...) and rules add realistic co-occurrence (AU4 suppresses
  AU1/AU2, AU26 implies AU25);
* **nuisances**: small head rotations, scale and shift, lighting gradients, sensor noise;
* **label noise**: a configurable fraction of positive AU episodes is annotated as absent
  (coders miss whole events, not single frames);
* per-frame 68-point landmarks and a face-parsing map (background, skin, brows, eyes, nose, lips,
  mouth interior, hair).

Two variants: ``synth-bp4d`` (41 subjects named like BP4D's, tasks T1-T8, BP4D's 12 AUs as 0/1/9
occurrence codes) and ``synth-disfa`` (27 subjects named like DISFA's, one long video each, 0-5
intensities of DISFA's 12 AUs, rarer AUs, a different rendering style so that cross-dataset
transfer has a domain gap).

The package follows the generator's steps: :mod:`.variants` (the two dataset shapes and the
expression prototypes), :mod:`.geometry` (the 68-point face and the AU deformations),
:mod:`.identities` (subjects and their AU trajectories), :mod:`.rendering` (pixels, region by
region) and :mod:`.generate` (a variant as a prepared dataset, and its fingerprint);
:mod:`.plugin` registers the datasets and protocols.
"""
