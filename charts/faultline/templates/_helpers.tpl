{{- define "faultline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "faultline.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "faultline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "faultline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "faultline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "faultline.labels" -}}
helm.sh/chart: {{ include "faultline.chart" . }}
{{ include "faultline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: faultline
{{- end }}

{{- define "faultline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "faultline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "faultline.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when the operator watches every namespace (no watchNamespaces). */}}
{{- define "faultline.clusterwide" -}}
{{- if .Values.watchNamespaces }}false{{ else }}true{{ end }}
{{- end }}

{{/* "true" when kopf peering is on: more than one replica, or asked for. */}}
{{- define "faultline.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicaCount) 1) }}true{{ else }}false{{ end }}
{{- end }}

{{- define "faultline.peeringName" -}}
{{- default (include "faultline.fullname" .) .Values.peering.name }}
{{- end }}

{{/*
What the operator needs on its own objects, in the namespaces it watches (ClusterRole when
cluster-wide, a Role per namespace otherwise). kopf watches the three kinds, patches them
for its finalizer and annotations, and writes status through the status subresource; the
operator reads them and patches status itself. It never updates a spec. The only objects
it creates and deletes are a FaultSchedule's FaultInjections.
*/}}
{{- define "faultline.rules.namespaced" -}}
- apiGroups: [faultline.dev]
  resources: [faulttargets, faultinjections, faultschedules]
  verbs: [get, list, watch, patch]
- apiGroups: [faultline.dev]
  resources: [faulttargets/status, faultinjections/status, faultschedules/status]
  verbs: [patch]
# A FaultSchedule's runs: FaultInjections it creates, and deletes past its history limits.
- apiGroups: [faultline.dev]
  resources: [faultinjections]
  verbs: [create, delete]
# Its children name it as owner with blockOwnerDeletion, which needs this where the
# OwnerReferencesPermissionEnforcement admission plugin runs.
- apiGroups: [faultline.dev]
  resources: [faultschedules/finalizers]
  verbs: [update]
# Events on FaultInjections (Injecting, Active, Completed, ForcedRelease, ...).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Kill switches: kopf watches ConfigMaps and handles only those named faultline-kill-switch
# (it cannot ask the API for one name); before an injection starts, that one is read.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
  resourceNames: [faultline-kill-switch]
{{- if and .allSecrets (not .clusterwide) }}
# The credentials FaultTargets name: every Secret of this namespace, read one by one.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- else if .Values.rbac.secretNames }}
# The credentials FaultTargets name, and only those (rbac.secretNames).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
  resourceNames: {{ toJson .Values.rbac.secretNames }}
{{- end }}
{{- if .peering }}
# kopf peering: the replicas' keep-alives, in the status of one object (the chart's).
- apiGroups: [kopf.dev]
  resources: [{{ if .clusterwide }}clusterkopfpeerings{{ else }}kopfpeerings{{ end }}]
  verbs: [list, watch]
- apiGroups: [kopf.dev]
  resources: [{{ if .clusterwide }}clusterkopfpeerings{{ else }}kopfpeerings{{ end }}]
  verbs: [patch]
  resourceNames: [{{ .peeringName | quote }}]
{{- end }}
{{- end }}
