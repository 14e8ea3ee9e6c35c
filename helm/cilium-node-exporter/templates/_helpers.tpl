{{/* Chart name, truncated to 63 characters. */}}
{{- define "cne.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or <release> when it already contains the chart name. */}}
{{- define "cne.fullname" -}}
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

{{/* Namespace of the namespaced objects. */}}
{{- define "cne.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/* Labels for pod selection; never change them after a release (DaemonSet selectors are immutable). */}}
{{- define "cne.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cne.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "cne.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cne.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cilium-node-exporter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "cne.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cne.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest. */}}
{{- define "cne.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The --sources argument: .Values.sources, plus "agent" (required) when agentMetrics.enabled. */}}
{{- define "cne.sources" -}}
{{- $sources := .Values.sources }}
{{- if .Values.agentMetrics.enabled }}
{{- $sources = append $sources "agent" }}
{{- end }}
{{- $sources | uniq | join "," }}
{{- end }}

{{/* The sources that may run, for RBAC and mounts: "auto" stands for all five (--sources=auto). */}}
{{- define "cne.effectiveSources" -}}
{{- $sources := splitList "," (include "cne.sources" .) }}
{{- if has "auto" $sources }}
{{- $sources = concat (without $sources "auto") (list "hubble" "kubelet" "apiserver" "agent" "settings") }}
{{- end }}
{{- $sources | uniq | join "," }}
{{- end }}

{{/* "true" when the settings source may read Cilium's ConfigMap (--settings-from includes configmap). */}}
{{- define "cne.settingsConfigMap" -}}
{{- if and (has "settings" (splitList "," (include "cne.effectiveSources" .))) (or (not .Values.settings.from) (has "configmap" .Values.settings.from)) }}true{{ end }}
{{- end }}

{{/* "true" when the Hubble socket is a unix socket from the host. */}}
{{- define "cne.hubbleHostSocket" -}}
{{- if and (has "hubble" (splitList "," (include "cne.effectiveSources" .))) (hasPrefix "unix://" (include "cne.hubbleAddress" .)) }}true{{ end }}
{{- end }}

{{/* Relabelings shared by the ServiceMonitor and the PodMonitor: node, job, optional cluster, then the user's. */}}
{{- define "cne.relabelings" -}}
{{- $root := index . 0 }}
{{- $monitor := index . 1 -}}
- action: replace
  sourceLabels:
    - __meta_kubernetes_pod_node_name
  targetLabel: node
- action: replace
  replacement: {{ $root.Values.jobLabel | quote }}
  targetLabel: job
{{- if $root.Values.clusterLabel.value }}
- action: replace
  replacement: {{ $root.Values.clusterLabel.value | quote }}
  targetLabel: {{ $root.Values.clusterLabel.name }}
{{- end }}
{{- with $monitor.relabelings }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Values that set exporter flags, with the exporter's default (from _flags.tpl) when unset. */}}
{{- define "cne.ciliumNamespace" -}}
{{- .Values.cilium.namespace | default (include "cne.flagDefault.cilium-namespace" .) -}}
{{- end }}
{{- define "cne.hubbleAddress" -}}
{{- .Values.hubble.address | default (include "cne.flagDefault.hubble-address" .) -}}
{{- end }}
{{- define "cne.envoyNamespace" -}}
{{- .Values.envoy.namespace | default (include "cne.ciliumNamespace" .) -}}
{{- end }}
{{- define "cne.settingsConfigMapName" -}}
{{- .Values.settings.configMapName | default (include "cne.flagDefault.settings-configmap" .) -}}
{{- end }}

{{/* The host path mounted for a unix:// Hubble address: the socket directory, or only the socket file. */}}
{{- define "cne.hubbleHostPath" -}}
{{- if eq .Values.hubble.mount "socket" -}}
{{- trimPrefix "unix://" (include "cne.hubbleAddress" .) -}}
{{- else -}}
{{- .Values.hubble.hostSocketDir -}}
{{- end -}}
{{- end }}

{{/* "true" when the pod needs its service-account token: the kubelet or API server source, the settings source
     reading the cilium-config ConfigMap, or kube-rbac-proxy
     (TokenReview, SubjectAccessReview); serviceAccount.automountServiceAccountToken overrides. */}}
{{- define "cne.automountToken" -}}
{{- $sources := splitList "," (include "cne.effectiveSources" .) }}
{{- $set := .Values.serviceAccount.automountServiceAccountToken }}
{{- if kindIs "invalid" $set -}}
{{- or (has "kubelet" $sources) (has "apiserver" $sources) (eq (include "cne.settingsConfigMap" .) "true") .Values.kubeRBACProxy.enabled -}}
{{- else -}}
{{- $set -}}
{{- end -}}
{{- end }}
