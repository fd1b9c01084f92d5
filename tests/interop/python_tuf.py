#!/usr/bin/env python3
"""The other side of the TUF interop tests, with python-tuf (the reference implementation).

  python_tuf.py make-repo OUT FILE...   A repository written by python-tuf's Metadata API:
                                        ed25519 keys, consistent snapshots, each FILE given as
                                        TARGET_NAME=LOCAL_PATH. Writes OUT/metadata, OUT/targets
                                        and OUT/root.json (the root a device trusts).
  python_tuf.py download URL ROOT OUT NAME...
                                        python-tuf's client (ngclient) on the repository at URL,
                                        trusting ROOT: refreshes the metadata, downloads each
                                        target NAME and prints {NAME: sha256} as JSON. Exit 1
                                        with the reason on stderr when TUF refuses anything.
"""

import hashlib
import json
import os
import shutil
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    MetaFile,
    Metadata,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer


def make_repo(out, files):
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)
    metadata_dir = os.path.join(out, "metadata")
    targets_dir = os.path.join(out, "targets")
    os.makedirs(metadata_dir, exist_ok=True)
    os.makedirs(targets_dir, exist_ok=True)

    targets = Targets(expires=expires)
    for spec in files:
        name, local = spec.split("=", 1)
        target = TargetFile.from_file(name, local, ["sha256"])
        targets.targets[name] = target
        # Consistent snapshots: the file is served as <dir>/<sha256>.<basename>.
        head, base = os.path.split(name)
        dest_dir = os.path.join(targets_dir, head)
        os.makedirs(dest_dir, exist_ok=True)
        shutil.copyfile(local, os.path.join(dest_dir, f"{target.hashes['sha256']}.{base}"))
    snapshot = Snapshot(expires=expires)
    snapshot.meta["targets.json"] = MetaFile(version=targets.version)
    timestamp = Timestamp(expires=expires)
    timestamp.snapshot_meta = MetaFile(version=snapshot.version)
    root = Root(expires=expires, consistent_snapshot=True)

    signers = {}
    for role in ("root", "targets", "snapshot", "timestamp"):
        signer = CryptoSigner.generate_ed25519()
        root.add_key(signer.public_key, role)
        signers[role] = signer

    serializer = JSONSerializer(compact=False)
    for signed, filename in (
        (root, "1.root.json"),
        (targets, "1.targets.json"),
        (snapshot, "1.snapshot.json"),
        (timestamp, "timestamp.json"),
    ):
        md = Metadata(signed)
        md.sign(signers[signed.type])
        md.to_file(os.path.join(metadata_dir, filename), serializer)
    shutil.copyfile(os.path.join(metadata_dir, "1.root.json"), os.path.join(out, "root.json"))


def download(url, root, out, names):
    from tuf.ngclient import Updater

    metadata_dir = os.path.join(out, "metadata")
    target_dir = os.path.join(out, "targets")
    os.makedirs(metadata_dir, exist_ok=True)
    os.makedirs(target_dir, exist_ok=True)
    with open(root, "rb") as f:
        bootstrap = f.read()
    updater = Updater(
        metadata_dir=metadata_dir,
        metadata_base_url=url.rstrip("/") + "/metadata/",
        target_base_url=url.rstrip("/") + "/targets/",
        target_dir=target_dir,
        bootstrap=bootstrap,
    )
    try:
        updater.refresh()
        got = {}
        for name in names:
            info = updater.get_targetinfo(name)
            if info is None:
                raise LookupError(f"{name} is not listed")
            path = updater.download_target(
                info, filepath=os.path.join(target_dir, name.replace("/", "_"))
            )
            with open(path, "rb") as f:
                got[name] = hashlib.sha256(f.read()).hexdigest()
    except Exception as e:  # every refusal, reported as such
        print(f"refused: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(got))


def main(argv):
    if len(argv) >= 2 and argv[0] == "make-repo":
        make_repo(argv[1], argv[2:])
    elif len(argv) >= 4 and argv[0] == "download":
        download(argv[1], argv[2], argv[3], argv[4:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
