"""Build a tiny, fake Visual Behavior Neuropixels cache with allensdk's own writers.

Runs under the vbn environment (``.venv-vbn/bin/python tests/vbn/fake_cache.py OUT_DIR``):
it needs allensdk 2.16.2. It writes, under ``OUT_DIR``:

- ``visual-behavior-neuropixels_project_manifest_v0.5.0.json`` + ``_downloaded_data.json``;
- ``visual-behavior-neuropixels-0.5.0/project_metadata/*.csv`` (sessions, probes, channels, units
  with quality metrics, behavior sessions);
- one NWB file per session, written by ``BehaviorEcephysSession.to_nwb()``, so that
  ``VisualBehaviorNeuropixelsProjectCache.from_local_cache(OUT_DIR)`` loads them offline;
- ``truth.json``: what was written (units with areas, metrics, spike times; stimulus blocks), the
  reference the tests compare extractions against.

Session 1000001 ("full"): 9 units on 4 channels (VISp, VISp, VISl, CA1); 5 pass the default
filters (quality good, isi < 0.5, amplitude cutoff < 0.1, presence > 0.95) and each of the other 4
fails exactly one filter (one sits exactly on the isi boundary). Stimulus blocks: 0 active change
detection [0, 20) s, 1 spontaneous [20, 40) s, 2 passive replay [40, 59) s.
Session 1000002 ("bad"): 3 units all of quality "noise"; blocks 0 active and 1 spontaneous only
(no passive replay).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pynwb
from allensdk.brain_observatory.behavior.data_objects import BehaviorSessionId, StimulusTimestamps
from allensdk.brain_observatory.behavior.data_objects.licks import Licks
from allensdk.brain_observatory.behavior.data_objects.metadata.behavior_metadata import (
    behavior_session_uuid as uuid_m,
)
from allensdk.brain_observatory.behavior.data_objects.metadata.behavior_metadata import (
    date_of_acquisition as doa_m,
)
from allensdk.brain_observatory.behavior.data_objects.metadata.behavior_metadata import (
    equipment as eq_m,
)
from allensdk.brain_observatory.behavior.data_objects.metadata.behavior_metadata import (
    project_code as pc_m,
)
from allensdk.brain_observatory.behavior.data_objects.metadata.behavior_metadata import (
    session_type as st_m,
)
from allensdk.brain_observatory.behavior.data_objects.metadata.behavior_metadata import (
    stimulus_frame_rate as fr_m,
)
from allensdk.brain_observatory.behavior.data_objects.metadata.subject_metadata import (
    age,
    sex,
)
from allensdk.brain_observatory.behavior.data_objects.metadata.subject_metadata import (
    driver_line as dl,
)
from allensdk.brain_observatory.behavior.data_objects.metadata.subject_metadata import (
    full_genotype as fg,
)
from allensdk.brain_observatory.behavior.data_objects.metadata.subject_metadata import (
    mouse_id as mi,
)
from allensdk.brain_observatory.behavior.data_objects.metadata.subject_metadata import (
    reporter_line as rl,
)
from allensdk.brain_observatory.behavior.data_objects.metadata.subject_metadata import (
    subject_metadata as sm_m,
)
from allensdk.brain_observatory.behavior.data_objects.rewards import Rewards
from allensdk.brain_observatory.behavior.data_objects.running_speed.running_acquisition import (
    RunningAcquisition,
)
from allensdk.brain_observatory.behavior.data_objects.running_speed.running_speed import (
    RunningSpeed,
)
from allensdk.brain_observatory.behavior.data_objects.stimuli.presentations import Presentations
from allensdk.brain_observatory.behavior.data_objects.stimuli.stimuli import Stimuli
from allensdk.brain_observatory.behavior.data_objects.stimuli.stimulus_templates import (
    StimulusTemplateFactory,
)
from allensdk.brain_observatory.behavior.data_objects.stimuli.templates import Templates
from allensdk.brain_observatory.behavior.data_objects.task_parameters import (
    StimulusDistribution,
    TaskParameters,
    TaskType,
)
from allensdk.brain_observatory.ecephys._behavior_ecephys_metadata import BehaviorEcephysMetadata
from allensdk.brain_observatory.ecephys._channel import Channel
from allensdk.brain_observatory.ecephys._channels import Channels
from allensdk.brain_observatory.ecephys._probe import Probe
from allensdk.brain_observatory.ecephys._unit import Unit
from allensdk.brain_observatory.ecephys._units import Units
from allensdk.brain_observatory.ecephys.behavior_ecephys_session import (
    BehaviorEcephysSession,
    VBNBehaviorSession,
)
from allensdk.brain_observatory.ecephys.data_objects.trials import VBNTrials
from allensdk.brain_observatory.ecephys.optotagging import OptotaggingTable
from allensdk.brain_observatory.ecephys.probes import Probes

PROJECT, VERSION = "visual-behavior-neuropixels", "0.5.0"
IMGSET, STYPE = "Natural_Images_Lum_Matched_set_ophys_G_2019", "EPHYS_1_images_G_3uL_reward"
T_END = 60.0
CHANNEL_AREAS = ["VISp", "VISp", "VISl", "CA1"]
# (channel index, quality, isi_violations, amplitude_cutoff, presence_ratio)
FULL_UNITS = [
    (0, "good", 0.10, 0.05, 0.99),
    (1, "good", 0.00, 0.00, 1.00),
    (2, "good", 0.20, 0.09, 0.97),
    (2, "good", 0.49, 0.01, 0.96),
    (3, "good", 0.05, 0.02, 0.98),
    (0, "noise", 0.10, 0.05, 0.99),  # fails quality
    (2, "good", 0.50, 0.05, 0.99),  # fails isi_violations < 0.5 (exactly on the boundary)
    (3, "good", 0.10, 0.20, 0.99),  # fails amplitude_cutoff < 0.1
    (1, "good", 0.10, 0.05, 0.90),  # fails presence_ratio > 0.95
]
BAD_UNITS = [(k % 4, "noise", 0.1, 0.05, 0.99) for k in range(3)]
# (block, stimulus_name or None for the image set, active, start, stop, presentation step)
FULL_BLOCKS = [(0, IMGSET, True, 0.0, 20.0, 0.75), (1, "spontaneous", False, 20.0, 40.0, 20.0),
               (2, IMGSET, False, 40.0, 59.0, 0.75)]
BAD_BLOCKS = FULL_BLOCKS[:2]


def _presentations(blocks):
    rows = []
    for block, name, active, t0, t1, step in blocks:
        for i, t in enumerate(np.arange(t0, t1, step)):
            image = name != "spontaneous"
            rows.append(dict(
                start_time=float(t), stop_time=float(min(t + 0.25, t1)) if image else t1,
                stimulus_name=name, stimulus_block=block, active=active,
                image_name=f"im00{int(i % 8 == 0)}" if image else None,
                is_change=image and i % 8 == 0, start_frame=int(t * 60),
                end_frame=int(t * 60) + 15))
    return pd.DataFrame(rows)


def build_session(sid, bid, pid, mouse, unit_specs, blocks, seed):
    """A BehaviorEcephysSession made of allensdk data objects, plus what it contains."""
    rng = np.random.default_rng(seed)
    ts = np.arange(int(T_END * 60)) / 60
    z = np.zeros(len(ts))
    doa = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
    imgs = [rng.integers(0, 255, (16, 20)).astype(np.uint8) for _ in range(2)]
    tmpl = StimulusTemplateFactory.from_processed(
        image_set_name=IMGSET, image_attributes=[{"image_name": "im000"}, {"image_name": "im001"}],
        warped=imgs, unwarped=[i.astype(float) for i in imgs])
    trials = pd.DataFrame(dict(start_time=[0.0, 6.0], stop_time=[6.0, 12.0], catch=[False] * 2,
                               change_frame=[240, 600]))
    running = pd.DataFrame({"timestamps": ts, "speed": z})
    beh = VBNBehaviorSession(
        behavior_session_id=BehaviorSessionId(bid),
        stimulus_timestamps=StimulusTimestamps(timestamps=ts, monitor_delay=0.0),
        running_acquisition=RunningAcquisition(pd.DataFrame(
            {"dx": z, "v_sig": z, "v_in": z + 1}, index=pd.Index(ts, name="timestamps"))),
        raw_running_speed=RunningSpeed(running, filtered=False),
        running_speed=RunningSpeed(running, filtered=True), metadata=None,
        licks=Licks(pd.DataFrame({"timestamps": [5.0], "frame": [300]})),
        rewards=Rewards(pd.DataFrame({"timestamps": [5.1], "volume": [0.003],
                                      "auto_rewarded": [False]})),
        stimuli=Stimuli(presentations=Presentations(_presentations(blocks)),
                        templates=Templates({IMGSET: tmpl})),
        task_parameters=TaskParameters(
            blank_duration_sec=[0.5, 0.5], stimulus_duration_sec=0.25,
            omitted_flash_fraction=0.05, response_window_sec=[0.15, 0.75], reward_volume=0.003,
            auto_reward_volume=0.005, session_type=STYPE, stimulus="images",
            stimulus_distribution=StimulusDistribution.GEOMETRIC,
            task_type=TaskType.CHANGE_DETECTION, n_stimulus_frames=len(ts), stimulus_name=IMGSET),
        trials=VBNTrials(trials, response_window_start=0.15),
        date_of_acquisition=doa_m.DateOfAcquisition(doa),
        eye_tracking_table=None, eye_tracking_rig_geometry=None)
    meta = BehaviorEcephysMetadata(
        ecephys_session_id=sid, date_of_acquisition=doa_m.DateOfAcquisition(doa),
        subject_metadata=sm_m.SubjectMetadata(
            sex=sex.Sex("F"), age=age.Age(120), reporter_line=rl.ReporterLine(None),
            full_genotype=fg.FullGenotype("wt/wt"), driver_line=dl.DriverLine([]),
            mouse_id=mi.MouseId(mouse)),
        behavior_session_id=BehaviorSessionId(bid),
        behavior_session_uuid=uuid_m.BehaviorSessionUUID(uuid.UUID(int=sid)),
        equipment=eq_m.Equipment("NP.1"), session_type=st_m.SessionType(STYPE),
        stimulus_frame_rate=fr_m.StimulusFrameRate(60.0),
        project_code=pc_m.ProjectCode("NeuropixelVisualBehavior"))
    chans = [Channel(id=pid * 10 + k, probe_id=pid, valid_data=True, probe_channel_number=k,
                     probe_vertical_position=20 * k, probe_horizontal_position=43,
                     structure_acronym=a) for k, a in enumerate(CHANNEL_AREAS)]
    units, truth_units = [], []
    for u, (ch, quality, isi, amp, pres) in enumerate(unit_specs):
        n = int(rng.integers(50, 400))
        spikes = np.sort(rng.uniform(0, T_END, n))
        units.append(Unit(
            id=pid * 100 + u, peak_channel_id=chans[ch].id, local_index=u, cluster_id=u,
            quality=quality, firing_rate=n / T_END, isi_violations=isi, presence_ratio=pres,
            amplitude_cutoff=amp, snr=3.0, mean_waveforms=np.zeros((4, 82)),
            spike_amplitudes=np.ones(n), spike_times=spikes))
        truth_units.append(dict(unit_id=pid * 100 + u, area=CHANNEL_AREAS[ch],
                                peak_channel_id=chans[ch].id, quality=quality,
                                isi_violations=isi, amplitude_cutoff=amp, presence_ratio=pres,
                                spike_times=spikes.tolist()))
    opto = OptotaggingTable(pd.DataFrame(dict(
        start_time=[59.0], condition=["pulse"], level=[1.0], stop_time=[59.01],
        stimulus_name=["pulse"], duration=[0.01])))
    probes = Probes([Probe(id=pid, name="probeA", channels=Channels(chans), units=Units(units))])
    session = BehaviorEcephysSession(behavior_session=beh, metadata=meta, probes=probes,
                                     optotagging_table=opto)
    pres = _presentations(blocks)  # a block spans its first start to its last stop
    truth_blocks = [dict(block=b, stimulus_name=n, active=a,
                         start=float(pres.start_time[pres.stimulus_block == b].min()),
                         stop=float(pres.stop_time[pres.stimulus_block == b].max()))
                    for b, n, a, *_ in blocks]
    return session, chans, truth_units, truth_blocks


SESSIONS = [  # (ecephys id, behavior id, probe id, mouse id, units, blocks, seed)
    (1000001, 2000001, 3000001, 555555, FULL_UNITS, FULL_BLOCKS, 1),
    (1000002, 2000002, 3000002, 555556, BAD_UNITS, BAD_BLOCKS, 2),
]


def write_cache(out: Path) -> dict:
    """Write the fake cache under ``out`` (created; must be empty or absent); return the truth."""
    root = out / f"{PROJECT}-{VERSION}"
    md = root / "project_metadata"
    md.mkdir(parents=True)
    rows = {k: [] for k in ("ecephys_sessions", "behavior_sessions", "probes", "channels",
                            "units")}
    data_files, truth = {}, {}
    for file_id, (sid, bid, pid, mouse, specs, blocks, seed) in enumerate(SESSIONS):
        session, chans, t_units, t_blocks = build_session(sid, bid, pid, mouse, specs, blocks,
                                                          seed)
        rel = f"behavior_ecephys_sessions/{sid}/ecephys_session_{sid}.nwb"
        (root / rel).parent.mkdir(parents=True)
        nwbfile = session.to_nwb()[0]  # BEFORE NWBHDF5IO: to_nwb() registers the namespaces
        with pynwb.NWBHDF5IO(str(root / rel), "w") as io:
            io.write(nwbfile)
        data_files[str(file_id)] = rel
        truth[str(sid)] = dict(units=t_units, blocks=t_blocks, t_end=T_END)
        rows["ecephys_sessions"].append(dict(
            ecephys_session_id=sid, behavior_session_id=bid, session_type=STYPE,
            mouse_id=mouse, unit_count=len(specs), probe_count=1, channel_count=len(chans),
            prior_exposures_to_image_set=5, file_id=file_id, abnormal_histology=np.nan,
            abnormal_activity=np.nan, experience_level="Familiar"))
        rows["behavior_sessions"].append(dict(behavior_session_id=bid, ecephys_session_id=sid,
                                              file_id=np.nan))
        rows["probes"].append(dict(ecephys_probe_id=pid, ecephys_session_id=sid, name="probeA",
                                   has_lfp_data=False, lfp_sampling_rate=2500.0,
                                   file_id=np.nan))
        rows["channels"] += [dict(ecephys_channel_id=c.id, ecephys_probe_id=pid,
                                  ecephys_session_id=sid, structure_acronym=c.structure_acronym)
                             for c in chans]
        rows["units"] += [dict(unit_id=u["unit_id"], ecephys_channel_id=u["peak_channel_id"],
                               ecephys_probe_id=pid, ecephys_session_id=sid, snr=3.0,
                               quality=u["quality"], isi_violations=u["isi_violations"],
                               amplitude_cutoff=u["amplitude_cutoff"],
                               presence_ratio=u["presence_ratio"]) for u in t_units]
    for name, recs in rows.items():
        pd.DataFrame(recs).to_csv(md / f"{name}.csv", index=False)

    def entry(path):  # never contacted: from_local_cache reads the files already on disk
        return {"url": f"https://example.invalid/{PROJECT}/{path}", "version_id": "x",
                "file_hash": "0"}

    manifest = {"project_name": PROJECT, "manifest_version": VERSION,
                "metadata_file_id_column_name": "file_id",
                "data_pipeline": [{"name": "AllenSDK", "version": "2.16.2"}],
                "metadata_files": {n: entry(f"project_metadata/{n}.csv") for n in rows},
                "data_files": {k: entry(v) for k, v in data_files.items()}}
    (out / f"{PROJECT}_project_manifest_v{VERSION}.json").write_text(json.dumps(manifest))
    (out / "_downloaded_data.json").write_text("{}")
    (out / "truth.json").write_text(json.dumps(truth))
    return truth


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: fake_cache.py OUT_DIR")
    write_cache(Path(sys.argv[1]))
