"""The OpenAPI 3 description of the JSON API, served at /openapi.json."""

from exports.forms import ALL_FORMATS, MIN_MAX_FILE_SIZE
from exports.media.options import MAX_SPEED, MIN_SPEED
from exports.media.overlay import POSITIONS, ZONES

TIME = {
    "type": "string",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
    "example": "2022-06-27T15:10:00.000Z",
}
NULLABLE_TIME = {**TIME, "type": ["string", "null"]}
STATES = ["Created", "InProgress", "ReadyForDownload", "Failed", "Cancelled", "Deleted"]

TASK = {
    "type": "object",
    "required": ["CameraId", "From", "To", "ArchiveTaskId", "ErrorMessage", "State"],
    "additionalProperties": False,
    "properties": {
        "CameraId": {"type": ["string", "null"]},
        "From": {"type": ["string", "null"]},
        "To": {"type": ["string", "null"]},
        "ArchiveTaskId": {"type": ["string", "null"], "format": "uuid"},
        "ErrorMessage": {"type": ["string", "null"]},
        "State": {"type": "string", "enum": STATES},
    },
}
GROUP_TASKS = {
    "type": "array",
    "description": "A group (CameraIds): each camera's own task, in the order of CameraIds.",
    "items": {
        "type": "object",
        "required": ["CameraId", "ArchiveTaskId"],
        "properties": {
            "CameraId": {"type": "string"},
            "ArchiveTaskId": {"type": "string", "format": "uuid"},
            "Mosaic": {"type": "string", "enum": ["2x2", "3x3"], "description": "The mosaic's task"},
        },
    },
}
CAMERA_IDS = {"type": "array", "items": {"type": "string"}, "description": "A group: its cameras"}
CREATED = {
    **TASK,
    "properties": {
        **TASK["properties"],
        "CameraIds": CAMERA_IDS,
        "Tasks": GROUP_TASKS,
        "CameraId": {"type": "string"},
        "From": TIME,
        "To": TIME,
        "ArchiveTaskId": {"type": "string", "format": "uuid"},
        "ErrorMessage": {"type": "null"},
        "State": {"type": "string", "enum": ["Created"]},
    },
}
ERROR = {
    **TASK,
    "description": "Every error: the task fields with ArchiveTaskId null (create) and a message.",
    "properties": {
        **TASK["properties"],
        "ErrorMessage": {"type": "string"},
        "Percents": {"type": "integer", "minimum": 0, "maximum": 100},
    },
}
STATUS = {
    "type": "object",
    "required": TASK["required"] + ["Percents", "Url"],
    "additionalProperties": False,
    "properties": {
        **TASK["properties"],
        "CameraId": {"type": "string"},
        "From": TIME,
        "To": TIME,
        "ArchiveTaskId": {"type": "string", "format": "uuid"},
        "Percents": {
            "type": "integer", "minimum": 0, "maximum": 100,
            "description": "100 only while the file can be downloaded (ReadyForDownload); "
            "Failed/Cancelled: how far the run got (at most 99); Deleted: 0.",
        },
        "Url": {
            "type": ["string", "null"],
            "description": "Signed link, valid without credentials until `expires`; null until ready. "
            "For a task exported in parts: the first part.",
        },
        "CameraIds": CAMERA_IDS,
        "Mosaic": {"type": "string", "enum": ["2x2", "3x3"], "description": "This task is a group's mosaic"},
        "Tasks": {
            "type": "array",
            "description": "A group (CameraIds): each camera's task status. The group's Url is "
            "a zip of every file, Percents the mean, State the common one (InProgress while "
            "any runs, else the worst).",
            "items": {"$ref": "#/components/schemas/Status"},
        },
        "Parts": {
            "type": "array",
            "description": "Only for a task given MaxFileSize or longer than one part (24 h): "
            "each file in order, each part's first frame following the previous part's last; "
            "empty until ready.",
            "items": {
                "type": "object",
                "required": ["Url", "From", "To", "Bytes"],
                "additionalProperties": False,
                "properties": {
                    "Url": {"type": "string", "description": "Signed link to this part"},
                    "From": TIME,
                    "To": TIME,
                    "Bytes": {"type": "integer", "minimum": 0},
                },
            },
        },
        "PackageUrl": {
            "type": ["string", "null"],
            "description": "`Url` with `&package=1`: the evidence package (zip); null until ready.",
        },
    },
}
# -- case data and legal hold (ours, optional: a PSIM client sends and sees none of it) -------
CASE_FIELDS = {
    "Name": {"type": ["string", "null"], "maxLength": 200, "description": "Case or incident name."},
    "Comment": {"type": ["string", "null"], "maxLength": 2000},
    "Keep": {
        "type": ["boolean", "null"],
        "description": "Legal hold: the file is exempt from retention expiry until released. "
        "true needs the permission exports.keep_exporttask (403 otherwise).",
    },
}
CASE_ANSWER = {
    "Name": {"type": ["string", "null"]},
    "Comment": {"type": ["string", "null"]},
    "Keep": {"type": "boolean"},
}
for _schema in (STATUS, ERROR):
    _schema["properties"].update(CASE_ANSWER)
STATUS["description"] = (
    "Name, Comment and Keep are present only for a task with case data or a legal hold."
)
KEEP_BODY = {
    "type": "object",
    "required": ["ArchiveTaskId", "Keep"],
    "properties": {"ArchiveTaskId": {"type": "string"}, "Keep": {"type": "boolean"}},
}

CAMERAS = {
    "type": "object",
    "required": ["Cameras"],
    "properties": {
        "Cameras": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["CameraId", "Name", "FirstRecord", "LastRecord", "Recorded"],
                "properties": {
                    "CameraId": {"type": "string"},
                    "Name": {"type": "string"},
                    "FirstRecord": NULLABLE_TIME,
                    "LastRecord": NULLABLE_TIME,
                    "Recorded": {
                        "type": ["array", "null"],
                        "items": {
                            "type": "object",
                            "required": ["From", "To"],
                            "properties": {"From": TIME, "To": TIME},
                        },
                    },
                },
            },
        }
    },
}
HEALTH = {
    "type": "object",
    "required": ["Status", "Database", "Redis", "Workers", "Disk", "DiskFreeBytes"],
    "properties": {
        "Status": {"type": "string", "enum": ["ok", "degraded", "error"]},
        "Database": {"type": "string"},
        "Redis": {"type": "string"},
        "Workers": {"type": ["integer", "null"]},
        "QueuedJobs": {"type": ["integer", "null"]},
        "Maintenance": {"type": "string", "enum": ["ok", "late"]},
        "MaintenanceLastRun": {"type": ["string", "null"], "description": "null: not since Redis started"},
        "MaintenanceAgeSeconds": {"type": ["number", "null"]},
        "Disk": {"type": "string", "enum": ["ok", "low"]},
        "DiskFreeBytes": {"type": ["integer", "null"]},
        "Seconds": {"type": "number"},
    },
}
CREATE_BODY = {
    "type": "object",
    "required": ["From"],
    "anyOf": [{"required": ["CameraId"]}, {"required": ["CameraIds"]}],
    "description": "Field names match case-insensitively; unknown fields are ignored.",
    "properties": {
        "CameraId": {"type": ["string", "integer"], "example": "1"},
        "CameraIds": {
            "type": "array",
            "items": {"type": ["string", "integer"]},
            "minItems": 1,
            "maxItems": 16,
            "description": "Several cameras, one range: a group of tasks (one per camera, all "
            "starting with the frame on screen at From) answered with one ArchiveTaskId, the "
            "group's, whose status, download (a zip) and delete cover them all. A CameraId "
            "beside them comes first. Every camera must be one you may export (else 404) and "
            "have recording in the range (else 404); otherwise no task is made.",
        },
        "From": {
            "type": "string",
            "description": "UTC; fractional seconds, `Z` or an offset such as +03:00 accepted.",
            "example": "2022-06-27T15:10:00.00Z",
        },
        "To": {
            "type": ["string", "null"],
            "description": "Absent or null: up to the camera's last recorded frame.",
        },
        "Format": {
            "type": "string",
            "enum": list(ALL_FORMATS),
            "description": "Case-insensitive; absent: PSIMEXPORT_CONTAINER_FORMAT. jpg/png: a "
            "still image of the frame on screen at From (To is ignored).",
        },
        "Overlay": {
            "type": ["boolean", "null"],
            "description": "Draw the camera name and each frame's recorded time into the "
            "picture (re-encodes the video; audio stays copied).",
        },
        "OverlayPosition": {"type": ["string", "null"], "enum": [*POSITIONS, None],
                            "description": "Corner of the overlay; default top-left."},
        "OverlayZone": {"type": ["string", "null"], "enum": [*ZONES, None],
                        "description": "Time in the camera's zone (default) or UTC."},
        "OverlayMilliseconds": {"type": ["boolean", "null"],
                                "description": "Time to the millisecond; default: the second."},
        "Speed": {
            "type": ["integer", "null"], "minimum": MIN_SPEED, "maximum": MAX_SPEED,
            "description": "Timelapse: every Speed-th frame, Speed times faster, no audio.",
        },
        **CASE_FIELDS,
        "Mosaic": {
            "type": ["string", "null"],
            "enum": ["2x2", "3x3", None],
            "description": "With CameraIds (at most 4 or 9): one more task in the group, a video "
            "of all the cameras in a grid on one clock, each tile labelled with its camera's "
            "name (re-encoded to H.264; ranges of at most 1 hour).",
        },
        "MaxFileSize": {
            "type": ["integer", "null"],
            "minimum": MIN_MAX_FILE_SIZE,
            "maximum": (1 << 62) - 1,
            "description": "Bytes. Split the export into parts no larger than this, cut at "
            "keyframes; the status lists them in `Parts`. Absent: one file (parts of at most "
            "24 h for longer ranges).",
        },
    },
}


def _json(schema_name):
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}


def _errors(*codes):
    reasons = {
        400: "Bad request",
        401: "No or bad credentials (WWW-Authenticate says how to send them)",
        403: "CSRF check failed (session authentication only), or a legal hold (Keep) without "
        "the permission exports.keep_exporttask",
        404: "Unknown, or not visible to this caller",
        405: "Method not allowed",
        409: "Not ready yet (or Failed/Cancelled: no file); delete: under legal hold; keep: deleted",
        410: "Deleted or expired",
        413: "Body over 64 KiB",
        416: "Range not satisfiable",
        429: "Too many queued tasks for this caller (create), or too many failed sign-ins for "
        "this user name or address (any authenticated call; Retry-After says when to retry)",
        503: "Job queue unavailable",
        507: "Not enough disk for exports",
    }
    return {str(code): {"description": reasons[code], "content": _json("Error")} for code in codes}


TASK_ID_QUERY = {
    "name": "archivetaskid",
    "in": "query",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}


def document(request=None) -> dict:
    servers = [{"url": request.build_absolute_uri("/").rstrip("/")}] if request else []
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "psimexport",
            "version": "1.0",
            "description": "Archive export API compatible with Axxon PSIM 1.0.",
        },
        "servers": servers,
        "security": [{"token": []}, {"basic": []}, {"session": []}],
        "paths": {
            "/createarchivetask": {
                "post": {
                    "summary": "Create an export task",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": CREATE_BODY}}},
                    "responses": {
                        "200": {"description": "Task created", "content": _json("Created")},
                        **_errors(400, 401, 403, 404, 405, 413, 429, 503, 507),
                    },
                }
            },
            "/getarchivetaskstatus": {
                "get": {
                    "summary": "Status of a task",
                    "parameters": [TASK_ID_QUERY],
                    "responses": {
                        "200": {"description": "Task status", "content": _json("Status")},
                        **_errors(400, 401, 404, 429),
                    },
                }
            },
            "/download": {
                "get": {
                    "summary": "Download the exported file (single byte ranges supported)",
                    "security": [{"token": []}, {"basic": []}, {"session": []}, {}],
                    "parameters": [
                        {"name": "file", "in": "query", "required": True, "schema": {"type": "string", "format": "uuid"}},
                        {"name": "part", "in": "query", "schema": {"type": "integer", "minimum": 1}, "description": "A part of a task exported in parts (default 1)"},
                        {"name": "expires", "in": "query", "schema": {"type": "integer"}},
                        {"name": "signature", "in": "query", "schema": {"type": "string"}},
                        {"name": "Range", "in": "header", "schema": {"type": "string"}},
                        {"name": "package", "in": "query", "schema": {"type": "string", "enum": ["1"]},
                         "description": "1: the evidence package (zip: video, manifest.json, manifest.sig, "
                         "audit trail, verify.py, README.txt), streamed; no ranges"},
                        {"name": "X-Package-Password", "in": "header", "schema": {"type": "string"},
                         "description": "with package=1: encrypt the zip with AES-256 (WinZip AE-2) under "
                         "this password; never stored or logged"},
                    ],
                    "responses": {
                        "200": {
                            "description": "The file",
                            "headers": {
                                "X-Content-SHA256": {"schema": {"type": "string"}, "description": "SHA-256 of the whole file, hex"},
                                "ETag": {"schema": {"type": "string"}},
                                "Accept-Ranges": {"schema": {"type": "string"}},
                            },
                            "content": {
                                "video/*": {"schema": {"type": "string", "format": "binary"}},
                                "application/zip": {"schema": {"type": "string", "format": "binary"}},
                            },
                        },
                        "206": {"description": "Part of the file (Content-Range)"},
                        "304": {"description": "Not modified (If-None-Match / If-Modified-Since)"},
                        **_errors(400, 401, 404, 409, 410, 416, 429),
                    },
                }
            },
            "/deletearchivetask": {
                "post": {
                    "summary": "Cancel a task or delete its file (idempotent)",
                    "parameters": [{**TASK_ID_QUERY, "required": False}],
                    "requestBody": {
                        "content": {"application/json": {"schema": {"type": "object", "properties": {"ArchiveTaskId": {"type": "string"}}}}}
                    },
                    "responses": {
                        "200": {"description": "State Cancelled or Deleted", "content": _json("Status")},
                        **_errors(400, 401, 403, 404, 409, 413, 429),
                    },
                }
            },
            "/keeparchivetask": {
                "post": {
                    "summary": "Set or release a task's legal hold (ours)",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": KEEP_BODY}}},
                    "responses": {
                        "200": {"description": "The task's status, with Keep", "content": _json("Status")},
                        **_errors(400, 401, 403, 404, 405, 409, 413, 429),
                    },
                }
            },
            "/getcameras": {
                "get": {
                    "summary": "Cameras this caller may export",
                    "parameters": [
                        {"name": "from", "in": "query", "schema": {"type": "string"}},
                        {"name": "to", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {"description": "Cameras", "content": _json("Cameras")},
                        **_errors(400, 401, 429),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Database, Redis, workers, maintenance and disk",
                    "security": [{}],
                    "responses": {
                        "200": {"description": "Up (Status ok or degraded)", "content": _json("Health")},
                        "503": {"description": "Database or Redis down", "content": _json("Health")},
                    },
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "security": [{}], "responses": {"200": {"description": "OpenAPI 3"}}}
            },
        },
        "components": {
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "`Token <key>`"},
                "basic": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
            },
            "schemas": {
                "Created": CREATED,
                "Error": ERROR,
                "Status": STATUS,
                "Cameras": CAMERAS,
                "Health": HEALTH,
            },
        },
    }
